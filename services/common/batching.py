"""Natural batching: while one batch is being handled, new items queue up; the next batch
takes all of them. Under light load every item goes alone (no added latency); under heavy load
one database transaction or one RPC serves many items.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

# A handler returns one result per item, in order; an exception in the list fails that item
# only, an exception raised fails the whole batch.
BatchHandler = Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]]


class Batcher(Generic[T, R]):
    def __init__(self, handler: BatchHandler[T, R], *, max_batch: int = 500, name: str) -> None:
        self._handler = handler
        self._max_batch = max_batch
        self._name = name
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"batcher-{self._name}")

    @property
    def backlog(self) -> int:
        return len(self._pending)

    async def submit(self, item: T) -> R:
        if self._closed:
            raise RuntimeError(f"batcher {self._name} is closed")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while not (self._closed and not self._pending):
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            await self._handle(batch)

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
