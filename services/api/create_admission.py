"""Per-project fair admission of creates, weighted by the servers they make.

Creates that arrive together share one database transaction (create.py's batching), and
SQLite has one writer: a project that keeps several creates of 100 servers in flight would
put hundreds of rows into every batch, and every other project's single create would wait
for them. Here one project's creates in flight may add up to at most ``per_project``
servers; beyond, its next create waits (first come, first served within the project) until
one of its own ends. Other projects are not held: each has its own budget. Many small
creates of one project still run together (and batch), as before.

A budget alone bounds how much a project has in flight, not how much of the time: a project
that sends its next create of 100 the moment the last returns keeps the writer busy most of
the time (its transactions, and the conductor's for its servers), and another project's
create mostly arrives while one is under way. So while other projects' calls are in flight,
a create's servers go back to its project's budget only after a rest in proportion to the
time the create took, so that a project kept at its budget holds it at most ``share`` of the
time. A project below its budget (a few small creates) never waits for it; alone, nothing
rests.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

from services.api.context import RequestContext
from services.api.create import CreateServerCommand, CreateServerResult
from services.common.pacing import rest_ratio


class CreateUseCase(Protocol):
    async def __call__(
        self, command: CreateServerCommand, context: RequestContext
    ) -> CreateServerResult: ...


# The longest a create's servers rest before they go back to the budget.
REST_MAX_S = 2.0


def _alone(_: str) -> bool:
    return False


class CreateBudget:
    def __init__(
        self,
        per_project: int,
        *,
        others_busy: Callable[[str], bool] = _alone,
        share: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``others_busy(project)``: whether other projects' calls are in flight; a create's
        servers then rest (see the module) so that the project holds its budget at most
        ``share`` of the time (1: never rest)."""
        if per_project < 1:
            raise ValueError("per_project must be >= 1")
        self._others_busy = others_busy
        self._rest = rest_ratio(share)
        self._clock = clock
        self._cap = per_project
        self._used: Counter[str] = Counter()
        self._waiting: dict[str, deque[tuple[int, asyncio.Future[None]]]] = {}

    def in_flight(self, project_id: str) -> int:
        return self._used[project_id]

    @asynccontextmanager
    async def hold(self, project_id: str, servers: int) -> AsyncIterator[None]:
        weight = max(1, min(servers, self._cap))
        await self._acquire(project_id, weight)
        started = self._clock()
        try:
            yield
        finally:
            rest = 0.0
            if self._rest > 0 and self._others_busy(project_id):
                rest = min((self._clock() - started) * self._rest, REST_MAX_S)
            if rest > 0:
                asyncio.get_running_loop().call_later(rest, self._release, project_id, weight)
            else:
                self._release(project_id, weight)

    async def _acquire(self, project_id: str, weight: int) -> None:
        queue = self._waiting.get(project_id)
        if not queue and self._used[project_id] + weight <= self._cap:
            self._used[project_id] += weight
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(project_id, deque()).append((weight, granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release(project_id, weight)  # granted as it was cancelled
            else:
                waiting = self._waiting.get(project_id)
                if waiting is not None and (weight, granted) in waiting:
                    waiting.remove((weight, granted))
                    if not waiting:
                        del self._waiting[project_id]
                self._grant(project_id)  # a smaller create behind it may fit now
            raise

    def _release(self, project_id: str, weight: int) -> None:
        self._used[project_id] -= weight
        if self._used[project_id] <= 0:
            del self._used[project_id]
        self._grant(project_id)

    def _grant(self, project_id: str) -> None:
        queue = self._waiting.get(project_id)
        while queue and self._used[project_id] + queue[0][0] <= self._cap:
            weight, granted = queue.popleft()
            if not granted.done():
                self._used[project_id] += weight
                granted.set_result(None)
        if queue is not None and not queue:
            del self._waiting[project_id]


def servers_asked(command: CreateServerCommand) -> int:
    """The most servers ``command`` may make (validation refuses bad counts later)."""
    return max(command.max_count or 0, command.min_count or 0, 1)


class FairCreates:
    """CreateServers behind a per-project CreateBudget."""

    def __init__(self, create: CreateUseCase, budget: CreateBudget) -> None:
        self._create = create
        self._budget = budget

    async def __call__(
        self, command: CreateServerCommand, context: RequestContext
    ) -> CreateServerResult:
        async with self._budget.hold(context.project_id, servers_asked(command)):
            return await self._create(command, context)
