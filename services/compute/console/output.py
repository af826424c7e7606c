"""Console output on the compute host: the bounded tail of an instance's console log, and a
follower that streams what is appended after it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from services.common.errors import InvalidArgument
from services.compute.console.ports import ConsoleHypervisor
from services.compute.console.tail import MAX_CONSOLE_BYTES, MAX_LINES, Tail, read_tail

RunBlocking = Callable[..., Awaitable[Any]]
FOLLOW_CHUNK = 64 * 1024


def check_bounds(lines: int, max_bytes: int) -> int:
    """Validates ``lines``; returns the byte bound to use (0 or too large: the maximum)."""
    if not 0 <= lines <= MAX_LINES:
        raise InvalidArgument("lines", f"must be between 0 and {MAX_LINES}")
    if max_bytes < 0:
        raise InvalidArgument("max_bytes", "must not be negative")
    return min(max_bytes or MAX_CONSOLE_BYTES, MAX_CONSOLE_BYTES)


def _read_from(path: Path, offset: int) -> tuple[bytes, int] | None:
    """New bytes after ``offset`` (at most FOLLOW_CHUNK) and the next offset; None once the
    file is gone (the instance was removed). A file that shrank was rotated or truncated:
    start again from its beginning."""
    try:
        with path.open("rb") as log:
            size = os.fstat(log.fileno()).st_size
            if size < offset:
                offset = 0
            log.seek(offset)
            data = log.read(FOLLOW_CHUNK)
    except FileNotFoundError:
        return None
    return data, offset + len(data)


class ConsoleOutput:
    def __init__(
        self,
        hypervisor: ConsoleHypervisor,
        run_blocking: RunBlocking,
        *,
        poll_interval: timedelta = timedelta(milliseconds=200),
    ) -> None:
        self._hypervisor = hypervisor
        self._run = run_blocking
        # The log is written by virtlogd, another process: no event tells us it grew, so a
        # follower looks again after this long (only while someone follows).
        self._poll = poll_interval.total_seconds()

    async def _tail(self, uuid: str, lines: int, max_bytes: int) -> tuple[Path, Tail]:
        bound = check_bounds(lines, max_bytes)
        path: Path = await self._run(self._hypervisor.console_log, uuid)
        try:
            tail: Tail = await self._run(lambda: read_tail(path, lines=lines, max_bytes=bound))
        except FileNotFoundError:
            tail = Tail(b"", False, 0)
        return path, tail

    async def tail(self, uuid: str, *, lines: int, max_bytes: int = 0) -> Tail:
        _, tail = await self._tail(uuid, lines, max_bytes)
        return tail

    async def follow(self, uuid: str, *, lines: int, max_bytes: int = 0) -> AsyncIterator[Tail]:
        """The tail first (even when empty), then each new chunk; ends when the log is gone."""
        path, tail = await self._tail(uuid, lines, max_bytes)
        yield tail
        offset = tail.end
        while True:
            step: tuple[bytes, int] | None = await self._run(_read_from, path, offset)
            if step is None:
                return
            data, offset = step
            if data:
                yield Tail(data, False, offset)
            else:
                await asyncio.sleep(self._poll)
