"""Retries with exponential backoff for idempotent calls that fail with UNAVAILABLE."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

T = TypeVar("T")

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = 5,
    first_delay: float = 0.05,
    max_delay: float = 2.0,
) -> T:
    """Only for idempotent calls: a DEADLINE_EXCEEDED request may still have been applied."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRYABLE or attempt == attempts:
                raise
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, max_delay)
    raise AssertionError("unreachable")
