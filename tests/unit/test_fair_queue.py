"""Shared slots go round the projects that wait, not to whoever queued first."""

from __future__ import annotations

import asyncio

import pytest

from services.common.fair_queue import FairQueue

pytestmark = pytest.mark.timeout(5)


async def test_a_late_project_is_served_before_an_early_projects_backlog() -> None:
    queue = FairQueue(1)
    order: list[str] = []
    release = asyncio.Event()

    async def call(tenant: str, name: str) -> None:
        async with queue.slot(tenant):
            order.append(name)
            if name == "a0":
                await release.wait()

    first = asyncio.create_task(call("a", "a0"))
    await asyncio.sleep(0)  # a0 holds the slot
    backlog = [asyncio.create_task(call("a", f"a{i}")) for i in range(1, 6)]
    for _ in range(3):
        await asyncio.sleep(0)
    late = asyncio.create_task(call("b", "b0"))
    await asyncio.sleep(0)
    assert queue.waiting == 6
    release.set()
    await asyncio.gather(first, *backlog, late)
    # b's one call comes right after the one a already had queued at the head
    assert order[:3] == ["a0", "a1", "b0"]
    assert sorted(order) == ["a0", "a1", "a2", "a3", "a4", "a5", "b0"]


async def test_a_cancelled_waiter_gives_up_its_place_and_frees_no_extra_slot() -> None:
    queue = FairQueue(1)
    await queue.acquire("a")
    waiter = asyncio.create_task(queue.acquire("b"))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert queue.waiting == 0
    queue.release("a")
    await asyncio.wait_for(queue.acquire("c"), 1)  # the one slot is free again
    blocked = asyncio.create_task(queue.acquire("d"))
    await asyncio.sleep(0)
    assert not blocked.done()  # and there is only one
    blocked.cancel()


async def test_a_project_never_holds_more_than_its_share() -> None:
    queue = FairQueue(4, per_tenant=2)
    await queue.acquire("a")
    await queue.acquire("a")
    third = asyncio.create_task(queue.acquire("a"))
    await asyncio.sleep(0)
    assert not third.done()  # two slots are free, but not for a
    await asyncio.wait_for(queue.acquire("b"), 1)  # b finds one at once
    queue.release("a")
    await asyncio.wait_for(third, 1)  # a's third call runs when one of a's ends
