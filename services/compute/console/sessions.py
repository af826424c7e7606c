"""Interactive console sessions on the compute host: the asyncio side of each hypervisor
stream, one session per instance (a new one takes over), bounded buffering, and a clean end
however the session ends (client gone, guest gone, taken over, service stopping)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from services.common.errors import Aborted, DomainError, Unavailable
from services.compute.console.ports import ConsoleHandle, ConsoleHypervisor

log = logging.getLogger(__name__)

RunBlocking = Callable[..., Awaitable[Any]]
# Output a slow client has not taken yet: past this, reading from the guest pauses (the
# guest's serial port then blocks, as a real terminal that stopped reading would).
HIGH_WATER_BYTES = 1024 * 1024
TAKEN_OVER = "another console session took over this server's console"
REOPEN_LIMIT = 3
REOPEN_WINDOW_S = 60.0


class ConsoleSession:
    """The sink of one hypervisor stream (fed from the hypervisor's thread) and the queue its
    RPC reads from (on the event loop)."""

    def __init__(self, uuid: str, loop: asyncio.AbstractEventLoop, high_water: int) -> None:
        self.uuid = uuid
        # Each hypervisor stream of this session feeds it under its own number: a stream
        # replaced by a reopen may still call in, and is not heard any more.
        self.generation = 0
        self.reopened: list[float] = []
        # Clear while a stream the hypervisor ended may be replaced: input waits for it.
        self._live = asyncio.Event()
        self._live.set()
        self._loop = loop
        self._high_water = high_water
        self._chunks: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._lock = threading.Lock()
        self._pending = 0
        self._paused = False
        self.handle: ConsoleHandle | None = None
        self.ended_reason = ""
        self.error: DomainError | None = None
        # Set before a newer session opens, so that the end it causes reads as a takeover.
        self.superseded = False

    def feed(self) -> _Feed:
        """The sink for the next hypervisor stream of this session."""
        self.generation += 1
        return _Feed(self, self.generation)

    # -- the hypervisor's thread
    def data(self, chunk: bytes, generation: int = 0) -> None:
        if generation and generation != self.generation:
            return
        with self._lock:
            self._pending += len(chunk)
            pause = not self._paused and self._pending > self._high_water
            if pause:
                self._paused = True
        if pause and self.handle is not None:
            self.handle.pause(True)
        self._call(self._push, chunk)

    def ended(self, reason: str, generation: int = 0) -> None:
        if generation and generation != self.generation:
            return
        self._call(self._hypervisor_ended, reason, generation)

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        # RuntimeError: the loop has closed, the service is gone and nobody reads.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(function, *args)

    # -- the event loop
    def _push(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._wake.set()

    def _hypervisor_ended(self, reason: str, generation: int) -> None:
        if not generation or generation == self.generation:
            self._live.clear()
            self.finish(reason)

    def restart(self) -> None:
        """A new stream replaces the ended one: the session reads on."""
        self.ended_reason = ""
        self._live.set()

    def final(self) -> None:
        """The session will not go on: nothing waits for a new stream."""
        self._live.set()

    async def wait_live(self) -> bool:
        """Waits while the session's stream is being replaced; False once it has ended."""
        await self._live.wait()
        return not self.over

    def finish(self, reason: str, error: DomainError | None = None) -> None:
        if not self.ended_reason:
            self.ended_reason = reason
            self.error = error
        self._wake.set()

    @property
    def over(self) -> bool:
        return bool(self.ended_reason)

    async def read(self) -> bytes | None:
        """The next output, or None once the session has ended and everything was read."""
        while not self._chunks:
            if self.ended_reason:
                return None
            self._wake.clear()
            await self._wake.wait()
        chunk = self._chunks.popleft()
        with self._lock:
            self._pending -= len(chunk)
            resume = self._paused and self._pending <= self._high_water // 2
            if resume:
                self._paused = False
        if resume and self.handle is not None and not self.ended_reason:
            self.handle.pause(False)
        return chunk

    def outcome(self) -> DomainError | None:
        """Why the RPC should fail, if it should (None: it ends OK)."""
        if self.error is not None:
            return self.error
        if self.superseded:
            return Aborted(TAKEN_OVER)
        return None


class _Feed:
    """One hypervisor stream's view of its session (see ConsoleSession.generation)."""

    def __init__(self, session: ConsoleSession, generation: int) -> None:
        self._session = session
        self._generation = generation

    def data(self, chunk: bytes) -> None:
        self._session.data(chunk, self._generation)

    def ended(self, reason: str) -> None:
        self._session.ended(reason, self._generation)


class ConsoleSessions:
    def __init__(
        self,
        hypervisor: ConsoleHypervisor,
        run_blocking: RunBlocking,
        *,
        high_water_bytes: int = HIGH_WATER_BYTES,
    ) -> None:
        self._hypervisor = hypervisor
        self._run = run_blocking
        self._high_water = high_water_bytes
        self._current: dict[str, ConsoleSession] = {}
        self._open: set[ConsoleSession] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self.opened_total = 0

    @property
    def open_sessions(self) -> list[ConsoleSession]:
        return list(self._open)

    def _lock(self, uuid: str) -> asyncio.Lock:
        lock = self._locks.get(uuid)
        if lock is None:
            lock = self._locks[uuid] = asyncio.Lock()
        return lock

    async def attach(self, uuid: str) -> ConsoleSession:
        """Opens a session on the guest's console, taking over any session it already has.

        The earlier session's stream is closed before the new one opens, never both at once:
        libvirt keys console streams by the pty's path, and an old stream torn down while a
        new one on the same path opens can end the new one (seen on libvirt 9.0)."""
        session = ConsoleSession(uuid, asyncio.get_running_loop(), self._high_water)
        async with self._lock(uuid):
            previous = self._current.pop(uuid, None)
            if previous is not None:
                previous.superseded = True
                previous.finish(TAKEN_OVER)
                await self._free(previous)
            opening = asyncio.ensure_future(
                self._run(self._hypervisor.open_console, uuid, session.feed())
            )
            try:
                # Shielded: the open runs on in its thread if the caller goes away meanwhile,
                # and what it opened must then be closed, not leaked.
                session.handle = await asyncio.shield(opening)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    abandoned: ConsoleHandle = await opening
                    await self._run(abandoned.close)
                raise
            self._open.add(session)
            self._current[uuid] = session
            self.opened_total += 1
        return session

    async def _free(self, session: ConsoleSession) -> None:
        self._open.discard(session)
        handle, session.handle = session.handle, None
        if handle is not None:
            # Shielded: a cancelled RPC still frees the hypervisor's stream.
            await asyncio.shield(self._run(handle.close))

    async def reopen(self, session: ConsoleSession) -> bool:
        """The hypervisor ended a session that nobody ended (seen on libvirt 9.0: a fresh
        console stream reporting end-of-stream while the guest runs on). If the guest still
        runs, open its console again, at most REOPEN_LIMIT times a minute; True when the
        session goes on. A stopped or deleted guest refuses the open: the session ends."""
        going_on = await self._reopen(session)
        if not going_on:
            session.final()
        return going_on

    async def _reopen(self, session: ConsoleSession) -> bool:
        if session.superseded or session.error is not None:
            return False
        now = asyncio.get_running_loop().time()
        session.reopened = [t for t in session.reopened if now - t < REOPEN_WINDOW_S]
        if len(session.reopened) >= REOPEN_LIMIT:
            return False
        reason = session.ended_reason
        async with self._lock(session.uuid):
            if self._current.get(session.uuid) is not session or session.superseded:
                return False
            old, session.handle = session.handle, None
            if old is not None:
                await asyncio.shield(self._run(old.close))
            try:
                session.handle = await asyncio.shield(
                    self._run(self._hypervisor.open_console, session.uuid, session.feed())
                )
            except DomainError as exc:
                log.info("console of %s ended (%s): %s", session.uuid, reason, exc.message)
                return False
        session.reopened.append(now)
        self.opened_total += 1
        session.restart()
        log.warning(
            "console of %s ended by the hypervisor (%s) while the guest runs: reopened",
            session.uuid, reason,
        )  # fmt: skip
        return True

    async def write(self, session: ConsoleSession, data: bytes) -> None:
        """Types ``data`` into the guest (raises ConsoleClosed when the stream ended under
        it); dropped when the session has ended."""
        if not data or not await session.wait_live():
            return
        handle = session.handle
        if handle is not None:
            await self._run(handle.send, data)

    async def detach(self, session: ConsoleSession) -> None:
        """Ends the session and frees its stream (also when the caller was cancelled)."""
        session.finish("detached")
        session.final()
        lock = self._lock(session.uuid)
        async with lock:
            if self._current.get(session.uuid) is session:
                del self._current[session.uuid]
            await self._free(session)
        if session.uuid not in self._current and not lock.locked():
            self._locks.pop(session.uuid, None)

    async def close(self) -> None:
        """The service stops: end every session (their RPCs finish as the guest's did)."""
        for session in list(self._open):
            reason = "the compute service is stopping"
            session.finish(reason, Unavailable(f"console session ended: {reason}"))
            await self.detach(session)
