from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.common.batching import Batcher


async def test_concurrent_submissions_share_batches_and_keep_results_apart() -> None:
    sizes: list[int] = []
    gate = asyncio.Event()

    async def handler(items: Sequence[int]) -> list[int | BaseException]:
        sizes.append(len(items))
        await gate.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(handler, name="t")
    batcher.start()
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 6)]
    await asyncio.sleep(0)
    gate.set()
    assert await first == 0
    results = await asyncio.gather(*rest, return_exceptions=True)
    assert sizes == [1, 5]  # the first went alone; the others queued behind it, together
    assert [r if isinstance(r, int) else str(r) for r in results] == [
        "odd 1",
        20,
        "odd 3",
        40,
        "odd 5",
    ]
    await batcher.close()


async def test_a_failing_batch_fails_each_caller() -> None:
    async def handler(items: Sequence[int]) -> list[int | BaseException]:
        raise RuntimeError("database gone")

    batcher: Batcher[int, int] = Batcher(handler, name="t")
    batcher.start()
    with pytest.raises(RuntimeError, match="database gone"):
        await batcher.submit(1)
    await batcher.close()


async def test_a_keyed_batcher_gives_owners_turns_and_a_heavy_item_goes_alone() -> None:
    """Owner A queues two heavy items, then B and C light ones: B and C share the next batch
    instead of waiting behind A's queue; each owner's items keep their order; an item heavier
    than the bound goes alone when its owner's turn leads a batch."""
    batches: list[list[str]] = []
    gate = asyncio.Event()

    async def handler(items: Sequence[tuple[str, int]]) -> list[str | BaseException]:
        batches.append([f"{owner}{weight}" for owner, weight in items])
        await gate.wait()
        return [owner for owner, _ in items]

    batcher: Batcher[tuple[str, int], str] = Batcher(
        handler, max_batch=64, name="t", weigh=lambda item: item[1], key=lambda item: item[0]
    )
    batcher.start()
    first = asyncio.ensure_future(batcher.submit(("A", 100)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert batches == [["A100"]]  # in hand
    queued = [("A", 100), ("A", 100), ("B", 1), ("C", 50), ("B", 1), ("C", 30)]
    rest = [asyncio.ensure_future(batcher.submit(item)) for item in queued]
    await asyncio.sleep(0)
    gate.set()
    assert await first == "A"
    assert await asyncio.gather(*rest) == [owner for owner, _ in queued]
    assert batches == [
        ["A100"],
        ["B1", "C50", "B1"],  # B and C had not been served; A's next does not fit
        ["A100"],  # A served longest ago: its turn leads, and its heavy item goes alone
        ["C30"],
        ["A100"],
    ]
    await batcher.close()


async def test_a_keyed_batcher_fills_a_batch_from_one_owner_when_it_is_alone() -> None:
    """Fairness costs a lone owner nothing: its light items still share batches."""
    sizes: list[int] = []
    gate = asyncio.Event()

    async def handler(items: Sequence[tuple[str, int]]) -> list[int | BaseException]:
        sizes.append(len(items))
        await gate.wait()
        return [weight for _, weight in items]

    batcher: Batcher[tuple[str, int], int] = Batcher(
        handler, max_batch=64, name="t", weigh=lambda item: item[1], key=lambda item: item[0]
    )
    batcher.start()
    first = asyncio.ensure_future(batcher.submit(("A", 1)))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(batcher.submit(("A", 1))) for _ in range(70)]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(first, *rest)
    assert sizes == [1, 64, 6]
    await batcher.close()
