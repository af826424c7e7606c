"""Per-project turns at sending on server streams, so that one project's watches cannot take
the event loop from every other project's calls.

A message sent on a stream costs the event loop ~100-150 us (building it, serialising it,
handing it to gRPC's core); a WatchServers snapshot of 1,000 servers is ~140 ms of it. Every
stream that has a message ready is one more step in the loop's ready queue, and asyncio runs
that queue first come, first served: with 16 snapshots streaming, each step of another
project's unary call waited behind 16 sends (measured: GetServer p50 3-4 ms -> 15 ms, p99
9-12 ms -> 77-88 ms under a flood of 16 watches re-opened after each snapshot).

So the streams of one project send one at a time (a turn), and while other projects' calls
are in flight a project's sending takes at most ``share`` of the time: after each quantum of
turns it rests in proportion. A turn is timed from the moment it is taken to the moment the
stream comes back for the next message, i.e. the message's making and its send; time other
work of the loop took in between is counted too, which only makes the rest longer when the
loop is busy, the moment it matters. Alone, a project streams flat out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from services.common.pacing import HELD_MAX_S, HELD_STEP_S, never, rest_ratio

# A project sends for this long (summed over its turns) before it may be told to rest.
QUANTUM_S = 0.002


@dataclass(eq=False)
class _ProjectTurns:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    spent: float = 0.0
    users: int = 0


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class StreamTurns:
    def __init__(
        self,
        others_busy: Callable[[str], bool],
        *,
        share: float,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[None]] = _sleep,
        held: Callable[[], bool] = never,
    ) -> None:
        """``others_busy(project)``: whether other projects' calls are in flight.
        ``share``: the part of the time (0 < share <= 1) one project's sending may take
        meanwhile (1: no rests, but still one stream of a project at a time).
        ``held``: whether the writer is held; meanwhile a project's next turn waits, in
        steps and for at most as long as a paced read would (services.common.pacing)."""
        self._others_busy = others_busy
        self._rest = rest_ratio(share)
        self._clock = clock
        self._sleep = sleep
        self._held = held
        self._projects: dict[str, _ProjectTurns] = {}

    def waiting(self, project_id: str) -> int:
        """Streams of ``project_id`` in or waiting for a turn."""
        found = self._projects.get(project_id)
        return found.users if found is not None else 0

    @asynccontextmanager
    async def turn(self, project_id: str) -> AsyncIterator[None]:
        """Hold it around one message's yield: it ends when the stream asks for the next."""
        turns = self._projects.get(project_id)
        if turns is None:
            turns = self._projects[project_id] = _ProjectTurns()
        turns.users += 1
        try:
            async with turns.lock:
                started = self._clock()
                try:
                    yield
                finally:
                    turns.spent += self._clock() - started
                # Not on an error or a closed stream: a rest must not delay a stream's end.
                if turns.spent >= QUANTUM_S:
                    if self._rest > 0 and self._others_busy(project_id):
                        await self._sleep(turns.spent * self._rest)
                    turns.spent = 0.0
                waited = 0.0
                while waited < HELD_MAX_S and self._held() and self._others_busy(project_id):
                    await self._sleep(HELD_STEP_S)
                    waited += HELD_STEP_S
        finally:
            turns.users -= 1
            # A stream comes back for its next turn after the last one ended: what it spent
            # (less than a quantum) stays counted; only an idle, even project is forgotten.
            if turns.users == 0 and turns.spent == 0:
                del self._projects[project_id]
