"""Shared capacity handed out fairly: ``slots`` units of work at once, and when there is a
queue, the next free slot goes to the next project in turn (round robin over the projects
that wait), not to whoever queued first. A project also never holds more than ``per_tenant``
slots, so a slot stays free for the next project that arrives. One project with a hundred
calls waiting then delays another project's call by little, not by a hundred calls' work.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class FairQueue:
    def __init__(self, slots: int, *, per_tenant: int | None = None) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self._free = slots
        self._cap = per_tenant or slots
        self._running: Counter[str] = Counter()
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    @asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        await self.acquire(tenant)
        try:
            yield
        finally:
            self.release(tenant)

    async def acquire(self, tenant: str) -> None:
        """Wait for a slot (each acquire is followed by exactly one ``release``)."""
        if self._free > 0 and not self._waiting and self._running[tenant] < self._cap:
            self._free -= 1
            self._running[tenant] += 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(tenant, deque()).append(granted)
        self._dispatch()  # a free slot this tenant may not take can go to another
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(tenant)  # granted as it was cancelled: pass the slot on
            else:
                self._forget(tenant, granted)
            raise

    def release(self, tenant: str) -> None:
        self._running[tenant] -= 1
        if self._running[tenant] <= 0:
            del self._running[tenant]
        self._free += 1
        self._dispatch()

    def _forget(self, tenant: str, granted: asyncio.Future[None]) -> None:
        queue = self._waiting.get(tenant)
        if queue is not None and granted in queue:
            queue.remove(granted)
            if not queue:
                del self._waiting[tenant]

    def _dispatch(self) -> None:
        """Hand free slots to waiting tenants in turn, skipping those at their share."""
        while self._free > 0:
            tenant = next((t for t in self._waiting if self._running[t] < self._cap), None)
            if tenant is None:
                return
            queue = self._waiting[tenant]
            granted = queue.popleft()
            if queue:
                self._waiting.move_to_end(tenant)  # its next call waits for the others' turn
            else:
                del self._waiting[tenant]
            if not granted.done():
                self._free -= 1
                self._running[tenant] += 1
                granted.set_result(None)
