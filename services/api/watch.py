"""WatchServers: state changes pushed to clients, so that nobody polls GetServer.

Every api process has one poller that runs while anybody watches: each ``poll_interval`` it
reads the rows that the watchers' scopes (servers, reservations, projects) changed recently,
in one query, and offers them to every watcher. A watcher first receives a snapshot, then
each change it has not seen, in order per server (a row is sent again only with a newer
``updated_at``). Rows are read with a ``lookback`` window, because a transaction can commit
a little after the time it stamped: a change is never missed for committing late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol

from services.api import validation
from services.api.context import RequestContext
from services.common.domain import Instance, VmState, utcnow
from services.common.errors import NotFound
from services.common.stores import InstanceStore, UnitOfWork, WatchScope

log = logging.getLogger(__name__)

QUEUE_MAX = 10_000


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
    queue: asyncio.Queue[tuple[Instance, str]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_MAX)
    )
    sent: dict[str, datetime] = field(default_factory=dict)
    overflowed: bool = False
    # Until its snapshot is out, changes the poller finds wait here (newest per server), so
    # that a client's first event for every server is its snapshot.
    ready: bool = False
    early: dict[str, tuple[Instance, str]] = field(default_factory=dict)

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
        try:
            self.queue.put_nowait((instance, change))
        except asyncio.QueueFull:
            self.overflowed = True  # a client that does not read: end its stream


class ServerWatch:
    def __init__(
        self,
        uow: UnitOfWork[WatchTx],
        *,
        poll_interval: float = 0.1,
        lookback: timedelta = timedelta(seconds=5),
    ) -> None:
        self._uow = uow
        self._interval = poll_interval
        self._lookback = lookback
        self._watchers: set[_Watcher] = set()
        self._poller: asyncio.Task[None] | None = None

    async def watch(
        self, context: RequestContext, *, server_id: str = "", reservation_id: str = ""
    ) -> AsyncIterator[tuple[Instance, str]]:
        if server_id:
            server_id = validation.check_uuid_ref("server_id", server_id)
        if reservation_id:
            reservation_id = validation.check_name("reservation_id", reservation_id)
        scope = context.scope if (server_id or reservation_id) else context.project_id
        watcher = _Watcher(scope, server_id, reservation_id)
        self._watchers.add(watcher)  # before the snapshot: no change can fall in between
        self._ensure_poller()
        try:
            snapshot = await self._uow.read(partial(_matching, watchers=[watcher], since=None))
            if server_id and not snapshot:
                raise NotFound("server", server_id, field="server_id")
            for instance in snapshot:
                watcher.offer(instance, "snapshot")
            watcher.ready = True
            for instance, change in watcher.early.values():
                watcher.offer(instance, change)  # only what is newer than the snapshot
            watcher.early.clear()
            while not watcher.overflowed:
                instance, change = await watcher.queue.get()
                yield instance, change
                if server_id and instance.vm_state is VmState.DELETED:
                    return
        finally:
            self._watchers.discard(watcher)

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="server-watch")

    async def _poll(self) -> None:
        while self._watchers:
            since = utcnow() - self._lookback
            watchers = list(self._watchers)
            try:
                changed = await self._uow.read(partial(_matching, watchers=watchers, since=since))
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


def _matching(tx: WatchTx, *, watchers: list[_Watcher], since: datetime | None) -> list[Instance]:
    """The rows any watcher covers (changed since ``since``, if given), in one query."""
    scopes = [WatchScope(w.project_id, w.server_id, w.reservation_id) for w in watchers]
    return tx.instances.watched(scopes, since=since)
