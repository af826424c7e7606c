"""Poll a condition until it holds: for tests and benchmarks that watch other processes or
another service's answers, where there is no event to await. The one copy of this loop
(sync and async); inside one process, await an event the code under test sets instead."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], object], timeout: float, what: str = "", *, interval: float = 0.05
) -> float:
    """Call ``check`` every ``interval`` seconds until it returns something true; the seconds
    that took. TimeoutError (naming ``what``) once ``timeout`` has passed."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what or 'a condition'}")
        time.sleep(interval)
    return time.monotonic() - started


async def wait_until_async(
    check: Callable[[], Awaitable[T] | T],
    timeout: float,
    what: str = "",
    *,
    interval: float = 0.02,
    last: Callable[[], object] | None = None,
) -> T:
    """Await ``check`` (a coroutine function or a plain one) every ``interval`` seconds until
    it gives something true, and return that. TimeoutError naming ``what`` (and ``last()``,
    the state it was stuck in, when given) once ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        result: T = await value if inspect.isawaitable(value) else value  # type: ignore[assignment]
        if result:
            return result
        if time.monotonic() > deadline:
            stuck = f" (last: {last()})" if last is not None else ""
            raise TimeoutError(
                f"timed out after {timeout:g}s waiting for {what or 'a condition'}{stuck}"
            )
        await asyncio.sleep(interval)


async def turns(count: int = 1) -> None:
    """Let the other ready tasks run ``count`` times, with no clock involved: after
    ``await turns()`` a task just started, or woken by an event the test set, has run on to
    its next await (asyncio runs ready tasks in the order they became ready)."""
    for _ in range(count):
        await asyncio.sleep(0)
