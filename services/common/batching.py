"""Natural batching: while one batch is being handled, new items queue up; the next batch
takes all of them. Under light load every item goes alone (no added latency); under heavy load
one database transaction or one RPC serves many items.

``linger`` trades a little latency for fewer batches where items come in bursts a few
milliseconds apart: after an idle spell the first item waits that long for company.
``weigh`` bounds a batch by what its items hold (the uuids of a cast) rather than by their
count; an item heavier than the bound still goes, alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

# A handler returns one result per item, in order; an exception in the list fails that item
# only, an exception raised fails the whole batch.
BatchHandler = Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]]


def _one(_: object) -> int:
    return 1


class Batcher(Generic[T, R]):
    def __init__(
        self,
        handler: BatchHandler[T, R],
        *,
        max_batch: int = 500,
        name: str,
        linger: timedelta = timedelta(0),
        weigh: Callable[[T], int] = _one,
    ) -> None:
        self._handler = handler
        self._max_batch = max_batch
        self._name = name
        self._linger = linger.total_seconds()
        self._weigh = weigh
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._weight = 0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"batcher-{self._name}")

    @property
    def backlog(self) -> int:
        """What waits, in the unit of ``weigh`` (items, by default)."""
        return self._weight

    @property
    def idle(self) -> bool:
        """Nothing waits and no batch is being handled."""
        return self._idle.is_set()

    async def submit(self, item: T) -> R:
        return await self.put(item)

    def put(self, item: T) -> asyncio.Future[R]:
        """Queue ``item`` without waiting for it; its future holds the result. An error
        nobody awaits is not reported again by asyncio (the handler's boundary logged it)."""
        if self._closed:
            raise RuntimeError(f"batcher {self._name} is closed")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)
        self._pending.append((item, future))
        self._weight += self._weigh(item)
        self._idle.clear()
        self._wakeup.set()
        return future

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        """Whole items from the front, up to ``max_batch`` in weight (at least one)."""
        taken, weight = 0, 0
        for item, _ in self._pending:
            cost = self._weigh(item)
            if taken and weight + cost > self._max_batch:
                break
            taken, weight = taken + 1, weight + cost
        batch = self._pending[:taken]
        del self._pending[:taken]
        self._weight -= weight
        return batch

    async def _run(self) -> None:
        while not (self._closed and not self._pending):
            if not self._pending:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                if self._linger:
                    await asyncio.sleep(self._linger)  # let the items close behind it join
                continue
            await self._handle(self._take())
        self._idle.set()

    async def _handle(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._handler([item for item, _ in batch])
        except Exception as exc:  # the whole batch failed: every caller learns why
            log.debug("batch %s of %d failed: %s", self._name, len(batch), exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def close(self) -> None:
        """Handle what is queued, then stop."""
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def cancel(self) -> None:
        """Stop now: the batch in hand is interrupted and what waits is dropped (its callers
        see CancelledError)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        self._weight = 0
        self._idle.set()


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
