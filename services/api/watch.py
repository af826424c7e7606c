"""WatchServers: state changes pushed to clients, so that nobody polls GetServer.

Every api process has one poller that runs while anybody watches: each ``poll_interval`` it
reads the rows that the watchers' scopes (servers, reservations, projects) changed recently,
in one query, and offers them to every watcher. A watcher first receives a snapshot, then
each change it has not seen, in order per server (a row is sent again only with a newer
``updated_at``). Rows are read with a ``lookback`` window, because a transaction can commit
a little after the time it stamped: a change is never missed for committing late.

Resume: each event carries a token (bound to the watch's filters and caller, as page tokens
are) holding a watermark: the newest change version queued so far (the snapshot's start for
the snapshot's last event). A client that reconnects with it gets no snapshot but every
server of its scope changed since ``watermark - lookback`` (the same late-commit margin as
the poller's; a server seen just before the drop may come again), then live changes. The
instances table holds each server's latest state, so what changed several times while the
client was away comes once, as it is now (as the live stream, which also sends latest
states). When that cannot be complete, the client is told to take a new snapshot
(FAILED_PRECONDITION naming resume_token): the token is older than ``resume_window``, a
server of the scope was archived since (its deletion is no longer in the table), or more
servers changed than one read returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol

from services.api import validation
from services.api.context import RequestContext
from services.api.paging import bound, decode_token, encode_token
from services.common.context import tenant_var
from services.common.domain import Instance, VmState, utcnow
from services.common.errors import InvalidArgument, NotFound, WrongState
from services.common.stores import WATCH_MAX, InstanceStore, UnitOfWork, WatchScope
from services.common.stream_turns import StreamTurns

log = logging.getLogger(__name__)

QUEUE_MAX = 10_000
# The poller's turn at the read threads, under a name no real project has (a project named
# so would only share the poller's turn, not take it).
POLLER_TENANT = "\x00watch-poller"


class WatchTx(Protocol):
    @property
    def instances(self) -> InstanceStore: ...


def _version(instance: Instance) -> datetime:
    return instance.updated_at or instance.created_at


@dataclass(eq=False)
class _Watcher:
    project_id: str | None
    server_id: str = ""
    reservation_id: str = ""
    # Each event with its watermark: the newest version queued up to it.
    queue: asyncio.Queue[tuple[Instance, str, datetime]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_MAX)
    )
    watermark: datetime | None = None
    sent: dict[str, datetime] = field(default_factory=dict)
    overflowed: bool = False
    # Until its snapshot is out, changes the poller finds wait here (newest per server), so
    # that a client's first event for every server is its snapshot.
    ready: bool = False
    early: dict[str, tuple[Instance, str]] = field(default_factory=dict)

    def scope(self) -> WatchScope:
        return WatchScope(self.project_id, self.server_id, self.reservation_id)

    def matches(self, instance: Instance) -> bool:
        if self.project_id is not None and instance.project_id != self.project_id:
            return False
        if self.server_id:
            return instance.uuid == self.server_id
        if self.reservation_id:
            return instance.reservation_id == self.reservation_id
        return True

    def offer(self, instance: Instance, change: str) -> None:
        if not self.ready and change != "snapshot":
            held = self.early.get(instance.uuid)
            if held is None or _version(held[0]) < _version(instance):
                self.early[instance.uuid] = (instance, change)
            return
        version = _version(instance)
        last = self.sent.get(instance.uuid)
        if last is not None and version <= last:
            return
        self.sent[instance.uuid] = version
        if change != "snapshot" and (self.watermark is None or version > self.watermark):
            self.watermark = version
        try:
            self.queue.put_nowait((instance, change, self.watermark or version))
        except asyncio.QueueFull:
            self.overflowed = True  # a client that does not read: end its stream


class ServerWatch:
    def __init__(
        self,
        uow: UnitOfWork[WatchTx],
        *,
        poll_interval: float = 0.1,
        lookback: timedelta = timedelta(seconds=5),
        resume_window: timedelta = timedelta(hours=1),
        pacer: Callable[[str], Callable[[], None]] | None = None,
        turns: StreamTurns | None = None,
    ) -> None:
        """``pacer(project)``: the checkpoint of a snapshot read for that project (a read of
        up to 1,000 servers, paced as a page of ListServers); None: unpaced. ``turns``: one
        project's streams send one at a time, at a share of the loop (None: unpaced)."""
        self._uow = uow
        self._pacer = pacer
        self._turns = turns
        self._interval = poll_interval
        self._lookback = lookback
        self._resume_window = resume_window
        self._watchers: set[_Watcher] = set()
        self._poller: asyncio.Task[None] | None = None

    async def watch(
        self,
        context: RequestContext,
        *,
        server_id: str = "",
        reservation_id: str = "",
        resume_token: str = "",
    ) -> AsyncIterator[tuple[Instance, str, str]]:
        """(server, change, resume token) for the snapshot (none on a resume), then each
        change; the token is "" on every snapshot event but the last."""
        if server_id:
            server_id = validation.check_uuid_ref("server_id", server_id)
        if reservation_id:
            reservation_id = validation.check_name("reservation_id", reservation_id)
        bound_to = bound(
            "WatchServers", context, server_id=server_id, reservation_id=reservation_id
        )
        resume_from = self._resume_point(resume_token, bound_to) if resume_token else None
        scope = context.scope if (server_id or reservation_id) else context.project_id
        watcher = _Watcher(scope, server_id, reservation_id)
        self._watchers.add(watcher)  # before the snapshot: no change can fall in between
        self._ensure_poller()
        try:
            if resume_from is None:
                # Whatever changes from now on is newer than this (less the lookback).
                watcher.watermark = utcnow()
                pace = None if self._pacer is None else self._pacer(context.project_id)
                snapshot = await self._uow.read(
                    partial(_matching, watchers=[watcher], since=None, checkpoint=pace)
                )
                if server_id and not snapshot:
                    raise NotFound("server", server_id, field="server_id")
                for instance in snapshot:
                    watcher.offer(instance, "snapshot")
            else:
                await self._replay(watcher, resume_from)
            watcher.ready = True
            for instance, change in watcher.early.values():
                watcher.offer(instance, change)  # only what is newer than the snapshot
            watcher.early.clear()
            while not watcher.overflowed:
                instance, change, watermark = await watcher.queue.get()
                # Mid-snapshot there is nothing to resume from: the client must start over.
                mid_snapshot = change == "snapshot" and not watcher.queue.empty()
                token = "" if mid_snapshot else _resume_token(watermark, bound_to)
                turn = (
                    contextlib.nullcontext()
                    if self._turns is None
                    else self._turns.turn(context.project_id)
                )
                async with turn:
                    yield instance, change, token
                if server_id and instance.vm_state is VmState.DELETED:
                    return
        finally:
            self._watchers.discard(watcher)

    def _resume_point(self, token: str, bound_to: dict[str, object]) -> datetime:
        (value,) = decode_token(token, bound_to=bound_to, field="resume_token")
        try:
            watermark = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise InvalidArgument("resume_token", "is not a token this service issued") from exc
        if utcnow() - watermark > self._resume_window:
            raise _take_a_snapshot(f"it is older than {self._resume_window}")
        return watermark - self._lookback

    async def _replay(self, watcher: _Watcher, since: datetime) -> None:
        """Every server of the scope changed since ``since``, as updates (or deletions)."""

        def read(tx: WatchTx) -> tuple[bool, list[Instance]]:
            archived = tx.instances.archived_since(watcher.scope(), since=since)
            return archived, _matching(tx, watchers=[watcher], since=since)

        archived, changed = await self._uow.read(read)
        if archived:
            raise _take_a_snapshot("a server it covers was archived since")
        if len(changed) >= WATCH_MAX:
            raise _take_a_snapshot(f"more than {WATCH_MAX - 1} servers changed since")
        watcher.watermark = since
        watcher.ready = True
        for instance in sorted(changed, key=_version):
            watcher.offer(instance, "deleted" if instance.vm_state is VmState.DELETED else "update")

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            # Its own context: started from a watcher's call, it would otherwise read as that
            # caller's project and wait for that project's turn at the read threads (measured:
            # behind a flood of its snapshots, 2 polls in 8 s instead of 80), and every other
            # project's watches with it.
            context = contextvars.Context()
            context.run(tenant_var.set, POLLER_TENANT)
            self._poller = asyncio.create_task(self._poll(), name="server-watch", context=context)

    async def _poll(self) -> None:
        while self._watchers:
            since = utcnow() - self._lookback
            watchers = list(self._watchers)
            try:
                # paced as a snapshot: under a project's flood of creates it reads a page's
                # worth of changed servers every poll_interval
                pace = None if self._pacer is None else self._pacer(POLLER_TENANT)
                changed = await self._uow.read(
                    partial(_matching, watchers=watchers, since=since, checkpoint=pace)
                )
            except Exception as exc:  # the database may be away: keep watching
                log.warning("watch poll failed: %s", exc)
                changed = []
            for instance in sorted(changed, key=_version):
                change = "deleted" if instance.vm_state is VmState.DELETED else "update"
                for watcher in watchers:
                    if watcher.matches(instance):
                        watcher.offer(instance, change)
            await asyncio.sleep(self._interval)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller


def _resume_token(watermark: datetime, bound_to: dict[str, object]) -> str:
    return encode_token((watermark.isoformat(),), bound_to=bound_to)


def _take_a_snapshot(why: str) -> WrongState:
    return WrongState(
        f"resume_token: the changes since cannot all be given ({why}): watch again without "
        "resume_token (a new snapshot)",
        field="resume_token",
    )


def _matching(
    tx: WatchTx,
    *,
    watchers: list[_Watcher],
    since: datetime | None,
    checkpoint: Callable[[], None] | None = None,
) -> list[Instance]:
    """The rows any watcher covers (changed since ``since``, if given), in one query."""
    return tx.instances.watched([w.scope() for w in watchers], since=since, checkpoint=checkpoint)
