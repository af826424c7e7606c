"""Large replies built in slices that give the event loop back between them.

One api process serves every project from one event loop: converting a page of 1,000 servers
to protobuf is ~40-80 ms of CPU, and done in one go it holds every other project's calls
for that long (nothing preempts a coroutine). In slices of ``SLICE`` the longest hold is a
few milliseconds, and another project's call runs between two slices.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# ~50-100 µs per server converted: a slice holds the loop for a few milliseconds at most.
SLICE = 50


async def convert_in_slices(
    items: Sequence[T], convert: Callable[[T], R], *, size: int = SLICE
) -> list[R]:
    converted: list[R] = []
    for start in range(0, len(items), size):
        if start:
            await asyncio.sleep(0)  # let the calls that are waiting run first
        converted.extend(convert(item) for item in items[start : start + size])
    return converted
