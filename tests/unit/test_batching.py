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
