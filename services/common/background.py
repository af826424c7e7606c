"""One background task of a service (a heartbeat, a periodic sync, a fan-out loop).

Every service had its own copy of the same start/close pair; this is that pair once. ``close``
cancels the task and *awaits* it, so nothing the task holds (a connection, a half-sent
push) outlives the service, and a task that died of an error is logged when it dies, not
found later in a Future nobody reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class BackgroundTask:
    """Runs ``run()`` as one named task from ``start()`` until ``close()``."""

    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._name = name
        self._run = run
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the task (once; a second call while it runs does nothing)."""
        if self.running:
            return
        self._task = asyncio.create_task(self._run(), name=self._name)
        self._task.add_done_callback(self._log_death)

    async def close(self) -> None:
        """Cancel the task and wait until it has ended. An error it died of earlier is
        raised here, as awaiting the task would."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _log_death(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("background task %s died", self._name, exc_info=exc)
