from __future__ import annotations

import pytest

from services.api.rate_limit import RateLimiter
from services.common.errors import RateLimited


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bursts_then_the_steady_rate_per_project() -> None:
    clock = Clock()
    limiter = RateLimiter(10, burst=20, clock=clock)
    for _ in range(20):
        limiter.check("a")
    with pytest.raises(RateLimited, match="10 requests per second"):
        limiter.check("a")
    limiter.check("b")  # another project has its own bucket
    clock.now += 0.5  # five tokens back
    for _ in range(5):
        limiter.check("a")
    with pytest.raises(RateLimited):
        limiter.check("a")


def test_zero_means_no_limit() -> None:
    limiter = RateLimiter(0)
    for _ in range(10_000):
        limiter.check("a")
