"""A large reply is built in slices, and other calls run between two slices."""

from __future__ import annotations

import asyncio

import pytest

from services.api.slices import convert_in_slices

pytestmark = pytest.mark.timeout(5)


async def test_other_calls_run_between_slices() -> None:
    trace: list[str] = []

    def convert(item: int) -> int:
        trace.append("c")
        return item * 2

    async def other_call() -> None:
        for _ in range(100):
            trace.append("o")
            await asyncio.sleep(0)

    other = asyncio.create_task(other_call())
    await asyncio.sleep(0)  # the other call is under way
    converted = await convert_in_slices(list(range(1000)), convert, size=50)
    other.cancel()
    assert converted == [i * 2 for i in range(1000)]  # all of it, in order
    runs = "".join(trace).split("o")
    # never more than one slice of conversion without the other call getting a turn
    assert max(len(run) for run in runs) == 50
    assert sum(len(run) for run in runs) == 1000


async def test_a_small_page_does_not_yield() -> None:
    assert await convert_in_slices([1, 2, 3], str) == ["1", "2", "3"]
    assert await convert_in_slices([], str) == []
