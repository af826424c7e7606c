"""Pacing of one call's long CPU work on a worker thread, so that one project cannot take the
interpreter from every other project's calls.

Python threads share one interpreter lock: a database thread turning a page of 1,000 rows
into objects holds it ~95% of the time it runs, and the event loop and the other threads
serving other projects wait their turn at each hand-over. Fair queueing decides *which*
calls run; pacing bounds *how much* of the interpreter a running expensive call takes while
other projects' calls are in flight: after each quantum of its own CPU time it sleeps (the
lock free) long enough that it used at most ``share`` of the time. Alone, it runs flat out.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Below this much CPU since the last pause, a checkpoint costs one clock read.
QUANTUM_S = 0.002


class Pacer:
    def __init__(
        self,
        others_busy: Callable[[], bool],
        *,
        share: float,
        clock: Callable[[], float] = time.thread_time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``others_busy``: whether other projects' calls are being served now.
        ``share``: the part of the time (0 < share <= 1) this work may use meanwhile."""
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self._others_busy = others_busy
        self._rest = (1 - share) / share
        self._clock = clock
        self._sleep = sleep
        self._mark = clock()

    def __call__(self) -> None:
        """A checkpoint: call it often (every few dozen rows) from the worker thread."""
        spent = self._clock() - self._mark
        if spent < QUANTUM_S:
            return
        if self._rest > 0 and self._others_busy():
            self._sleep(spent * self._rest)
        self._mark = self._clock()


def unpaced() -> None:
    """The checkpoint of work nobody paces."""
