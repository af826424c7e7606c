"""Pacing of one call's long CPU work on a worker thread, so that one project cannot take the
interpreter from every other project's calls.

Python threads share one interpreter lock: a database thread turning a page of 1,000 rows
into objects holds it ~95% of the time it runs, and the event loop and the other threads
serving other projects wait their turn at each hand-over. Fair queueing decides *which*
calls run; pacing bounds *how much* of the interpreter a running expensive call takes while
other projects' calls are in flight: after each quantum of its own time it sleeps (the lock
free) long enough that it used at most ``share`` of the time. Alone, it runs flat out.

Its time is wall-clock time, not the thread's CPU time: on a busy machine the thread holding
the interpreter lock is often descheduled, and every other thread waits for it meanwhile.
Measured under a flood of WatchServers snapshots on 2 vCPUs, snapshot reads paced by CPU time
to 5 % still held the lock 42 % of the time; paced by wall-clock time, another project's
CreateServer and GetServer p50 came back to their unloaded figures (from 2x). Waiting for the
lock counts as spent too, which only lengthens the rests when the interpreter is contended.

Meanwhile it also steps aside while ``held`` says a shared resource is taken (the database's
one writer): a write transaction waits for the interpreter at every statement, and every
other create waits for that transaction; measured under a flood, transactions that take
14 ms alone held the writer 100-300 ms at p90-p99. The pause is bounded (``HELD_MAX_S``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Below this much CPU since the last pause, a checkpoint costs one clock read.
QUANTUM_S = 0.002
# The longest a checkpoint steps aside for a held writer, and how often it looks again.
HELD_MAX_S = 0.05
HELD_STEP_S = 0.001


def never() -> bool:
    """A resource nobody holds (the default ``held``)."""
    return False


def rest_ratio(share: float) -> float:
    """Seconds of rest per second of work that keep the work to ``share`` of the time."""
    if not 0 < share <= 1:
        raise ValueError("share must be in (0, 1]")
    return (1 - share) / share


class Pacer:
    def __init__(
        self,
        others_busy: Callable[[], bool],
        *,
        share: float,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        held: Callable[[], bool] = never,
    ) -> None:
        """``others_busy``: whether other projects' calls are being served now.
        ``share``: the part of the time (0 < share <= 1) this work may use meanwhile.
        ``held``: whether a resource every call waits for (the writer) is taken now."""
        self._others_busy = others_busy
        self._rest = rest_ratio(share)
        self._clock = clock
        self._sleep = sleep
        self._held = held
        self._mark = clock()

    def __call__(self) -> None:
        """A checkpoint: call it often (every few dozen rows) from the worker thread."""
        spent = self._clock() - self._mark
        busy: bool | None = None
        if spent >= QUANTUM_S:
            busy = self._others_busy()
            if busy and self._rest > 0:
                self._sleep(spent * self._rest)
            self._mark = self._clock()
        # At every checkpoint, not once a quantum: a write transaction that starts while
        # this read runs waits for the interpreter at each of its statements until then.
        if self._held() and (busy if busy is not None else self._others_busy()):
            waited = 0.0
            while True:
                self._sleep(HELD_STEP_S)
                waited += HELD_STEP_S
                if waited >= HELD_MAX_S or not self._held():
                    break
            self._mark = self._clock()


def unpaced() -> None:
    """The checkpoint of work nobody paces."""
