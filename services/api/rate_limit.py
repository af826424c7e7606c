"""Requests per project per second: a token bucket per project (RESOURCE_EXHAUSTED beyond),
so one busy or runaway client cannot starve every other project of the api."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from services.common.errors import RateLimited

MAX_TRACKED = 10_000


class RateLimiter:
    def __init__(
        self, per_second: float, *, burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._rate = per_second
        self._burst = burst if burst is not None else max(1.0, 2 * per_second)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, project_id: str) -> None:
        """Take one token for ``project_id``; RateLimited when its bucket is empty.
        A rate of 0 means no limit."""
        if self._rate <= 0:
            return
        now = self._clock()
        tokens, then = self._buckets.get(project_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        if tokens < 1:
            self._buckets[project_id] = (tokens, now)
            # the time until the bucket holds a whole token again: the client's RetryInfo
            wait = timedelta(seconds=(1 - tokens) / self._rate)
            raise RateLimited(
                f"rate limit: at most {self._rate:g} requests per second per project "
                f"(bursts of {self._burst:g}); retry in {wait.total_seconds():.3g}s",
                retry_after=wait,
            )
        if len(self._buckets) >= MAX_TRACKED and project_id not in self._buckets:
            self._buckets.clear()  # forgetting full buckets only ever lets traffic through
        self._buckets[project_id] = (tokens - 1, now)
