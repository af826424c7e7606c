"""Per-project fair admission of creates, weighted by the servers they make."""

from __future__ import annotations

import asyncio

import pytest

from services.api.create_admission import CreateBudget

pytestmark = pytest.mark.timeout(5)


async def test_a_projects_big_creates_wait_for_each_other_not_for_others() -> None:
    budget = CreateBudget(100)
    order: list[str] = []
    release_first = asyncio.Event()

    async def create(project: str, servers: int, name: str, hold: asyncio.Event | None) -> None:
        async with budget.hold(project, servers):
            order.append(name)
            if hold is not None:
                await hold.wait()

    first = asyncio.create_task(create("flood", 100, "big-1", release_first))
    await asyncio.sleep(0)
    second = asyncio.create_task(create("flood", 100, "big-2", None))
    small = asyncio.create_task(create("flood", 1, "small", None))
    other = asyncio.create_task(create("victim", 1, "victim", None))
    await asyncio.wait_for(other, 1)  # another project is not held by the flood
    assert order == ["big-1", "victim"] and budget.in_flight("flood") == 100
    release_first.set()
    await asyncio.wait_for(asyncio.gather(first, second, small), 1)
    assert order == ["big-1", "victim", "big-2", "small"]  # in order within the project
    assert budget.in_flight("flood") == 0


async def test_many_small_creates_of_one_project_run_together() -> None:
    budget = CreateBudget(100)
    inside = 0
    most = 0
    gate = asyncio.Event()

    async def create() -> None:
        nonlocal inside, most
        async with budget.hold("p", 1):
            inside += 1
            most = max(most, inside)
            await gate.wait()
            inside -= 1

    tasks = [asyncio.create_task(create()) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    assert most == 50


async def test_a_cancelled_waiter_lets_the_next_one_in() -> None:
    budget = CreateBudget(10)
    held = asyncio.Event()

    async def hold(servers: int) -> None:
        async with budget.hold("p", servers):
            await held.wait()

    first = asyncio.create_task(hold(6))
    await asyncio.sleep(0)
    big = asyncio.create_task(hold(10))
    await asyncio.sleep(0)
    small = asyncio.create_task(hold(4))  # fits, but waits behind the big one (FIFO)
    await asyncio.sleep(0)
    assert budget.in_flight("p") == 6
    big.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert budget.in_flight("p") == 10  # the small one went in
    held.set()
    await asyncio.gather(first, small)
    with pytest.raises(asyncio.CancelledError):
        await big
    assert budget.in_flight("p") == 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_project_at_its_budget_rests_while_others_are_busy_and_never_alone() -> None:
    """A create of 100 that took 20 ms (the fake clock) with a share of a half: the project's
    next create of 100 waits ~20 ms for the servers to come back; alone, it goes at once.
    Another project, and the same project's creates below the budget, never wait."""
    clock, busy = Clock(), [True]
    budget = CreateBudget(100, others_busy=lambda _: busy[0], share=0.5, clock=clock)
    async with budget.hold("flood", 100):
        clock.now += 0.02
    assert budget.in_flight("flood") == 100  # resting
    async with budget.hold("victim", 100):  # another project's budget is its own
        pass
    nxt = asyncio.ensure_future(_enter(budget, "flood", 100))
    await asyncio.sleep(0)
    assert not nxt.done()
    await asyncio.wait_for(nxt, 2)  # the rest ends (call_later, ~20 ms)
    assert budget.in_flight("flood") == 0  # that one took no time: no rest
    busy[0] = False
    async with budget.hold("flood", 100):
        clock.now += 1.0
    assert budget.in_flight("flood") == 0  # alone: given back at once


async def _enter(budget: CreateBudget, project: str, servers: int) -> None:
    async with budget.hold(project, servers):
        pass
