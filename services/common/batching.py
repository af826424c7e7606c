"""Natural batching: while one batch is being handled, new items queue up; the next batch
takes all of them. Under light load every item goes alone (no added latency); under heavy load
one database transaction or one RPC serves many items.

``linger`` trades a little latency for fewer batches where items come in bursts a few
milliseconds apart: after an idle spell the first item waits that long for company.
``weigh`` bounds a batch by what its items hold (the uuids of a cast) rather than by their
count; an item heavier than the bound still goes, alone.

``key`` makes a batch fair between the items' owners (the projects of creates): instead of
first come, first served, a batch goes round the owners that wait, one item each per turn
(each owner's own items in their order), starting with the owner served longest ago, until
the bound is reached. One owner's heavy items then fill at most their turns: another owner's
item waits for the batch in hand and at most the next, not for a queue of heavy items.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
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


# Owners remembered for the order of turns; one not seen for this many batches starts afresh.
_OWNERS_REMEMBERED = 10_000


class Batcher(Generic[T, R]):
    def __init__(
        self,
        handler: BatchHandler[T, R],
        *,
        max_batch: int = 500,
        name: str,
        linger: timedelta = timedelta(0),
        weigh: Callable[[T], int] = _one,
        key: Callable[[T], Hashable] | None = None,
    ) -> None:
        self._handler = handler
        self._max_batch = max_batch
        self._name = name
        self._linger = linger.total_seconds()
        self._weigh = weigh
        self._key = key
        # owner -> number of the last batch it had an item in (oldest first)
        self._served: OrderedDict[Hashable, int] = OrderedDict()
        self._batches = 0
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
        if self._key is not None:
            return self._take_fairly(self._key)
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

    def _take_fairly(self, key: Callable[[T], Hashable]) -> list[tuple[T, asyncio.Future[R]]]:
        """Round the owners that wait, longest unserved first, one item of each per turn, up to
        ``max_batch`` in weight (the first item always goes). An owner whose next item does
        not fit is done for this batch, so its items keep their order."""
        queues: dict[Hashable, deque[int]] = {}
        for index, (item, _) in enumerate(self._pending):
            queues.setdefault(key(item), deque()).append(index)
        never = -1
        turns = deque(sorted(queues, key=lambda owner: self._served.get(owner, never)))
        chosen: list[int] = []
        weight = 0
        while turns:
            owner = turns.popleft()
            index = queues[owner][0]
            cost = self._weigh(self._pending[index][0])
            if chosen and weight + cost > self._max_batch:
                continue  # done for this batch
            chosen.append(index)
            weight += cost
            queues[owner].popleft()
            if queues[owner]:
                turns.append(owner)
        self._batches += 1
        for index in chosen:
            owner = key(self._pending[index][0])
            self._served[owner] = self._batches
            self._served.move_to_end(owner)
        while len(self._served) > _OWNERS_REMEMBERED:
            self._served.popitem(last=False)
        picked = set(chosen)
        batch = [self._pending[i] for i in sorted(chosen)]
        self._pending = [entry for i, entry in enumerate(self._pending) if i not in picked]
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
