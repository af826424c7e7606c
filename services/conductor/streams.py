"""The conductor's side of the api's long-lived BuildInstances streams: ended by the conductor
after ``max_age`` and when it drains, so that conductors scale out and in without losing a
cast.

A stream is pinned to the conductor it was opened on: without an end, a conductor added
later would never get one. The conductor ends a stream by returning its summary, whose
``messages`` count says how many it read; the api sends the rest again on its next stream,
which its channel may open on another conductor (round_robin, over a DNS name that the
servers' ``max_connection_age`` makes clients resolve again). Ages are jittered so that the
api's streams do not all move at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

JITTER = 0.2  # a stream lives max_age +- 20 %


class StreamEnded(Exception):
    """The conductor stops reading this stream (its age, or the conductor drains)."""


class BuildStream:
    def __init__(self, max_age: float | None) -> None:
        self._stop = asyncio.Event()
        self._deadline = (
            asyncio.get_running_loop().time() + max_age * random.uniform(1 - JITTER, 1 + JITTER)
            if max_age
            else None
        )
        self.done = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def next(self, reader: AsyncIterator[T]) -> T:
        """The next message; StopAsyncIteration at the end of the stream, StreamEnded when the
        conductor ends it first (a message that arrives in that very moment is still
        returned: the caller counts only what it got)."""
        if self._stop.is_set():
            raise StreamEnded
        read = asyncio.ensure_future(anext(reader))
        stop = asyncio.ensure_future(self._stop.wait())
        timeout = None
        if self._deadline is not None:
            timeout = max(self._deadline - asyncio.get_running_loop().time(), 0.0)
        try:
            await asyncio.wait({read, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not read.done():
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await read
            if read.cancelled():
                self._stop.set()
                raise StreamEnded
        return read.result()


class BuildStreams:
    """The open streams, so that a draining conductor can end them all."""

    def __init__(self, *, max_age: float | None) -> None:
        self._max_age = max_age
        self._open: set[BuildStream] = set()
        self.draining = False

    @contextlib.contextmanager
    def opened(self) -> Iterator[BuildStream]:
        stream = BuildStream(self._max_age)
        self._open.add(stream)
        try:
            yield stream
        finally:
            self._open.discard(stream)
            stream.done.set()

    async def end_all(self, timeout: float = 5.0) -> None:
        """Drain: end every open stream (the api sends what they did not read elsewhere) and
        take no new ones; wait up to ``timeout`` for them to answer."""
        self.draining = True
        streams = list(self._open)
        for stream in streams:
            stream.stop()
        if streams:
            log.info("ending %d build streams", len(streams))
            await asyncio.wait(
                [asyncio.ensure_future(s.done.wait()) for s in streams], timeout=timeout
            )
