"""Poll a condition until it holds: for tests and benchmarks that watch other processes,
where there is no event to await."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    check: Callable[[], bool], timeout: float, what: str = "", *, interval: float = 0.05
) -> float:
    """Call ``check`` every ``interval`` seconds until it returns something true; the seconds
    that took. TimeoutError (naming ``what``) once ``timeout`` has passed."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what or 'a condition'}")
        time.sleep(interval)
    return time.monotonic() - started
