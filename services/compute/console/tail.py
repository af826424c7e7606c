"""Reading the end of a console log without reading the whole file: a guest that has printed
for a month has a large log, and a caller only ever gets the last ``max_bytes`` of it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Nova's libvirt driver caps console output at 100 KiB (MAX_CONSOLE_BYTES): the same here.
MAX_CONSOLE_BYTES = 100 * 1024
MAX_LINES = 10_000


@dataclass(frozen=True, slots=True)
class Tail:
    data: bytes
    truncated: bool
    # Where the file ended when it was read: a follower continues from here.
    end: int


def last_lines(data: bytes, lines: int) -> tuple[bytes, bool]:
    """The last ``lines`` lines of ``data`` (a final line without a newline counts as one);
    ``lines`` 0 keeps everything. True when lines were left out."""
    if lines <= 0:
        return data, False
    body = data[:-1] if data.endswith(b"\n") else data
    parts = body.rsplit(b"\n", lines)
    if len(parts) <= lines:
        return data, False
    # parts[0] is everything before the kept lines, and the newline after it goes too.
    return data[len(parts[0]) + 1 :], True


def read_tail(path: Path, *, lines: int, max_bytes: int = MAX_CONSOLE_BYTES) -> Tail:
    """The last ``lines`` lines (0: all) of ``path`` within its last ``max_bytes`` bytes.
    When the bound cuts a line, that partial first line is dropped so that the output starts
    at a line boundary."""
    if max_bytes < 1:
        raise ValueError("max_bytes must be positive")
    with path.open("rb") as log:
        end = log.seek(0, os.SEEK_END)
        start = max(0, end - max_bytes)
        log.seek(start)
        data = log.read(end - start)
    truncated = start > 0
    if truncated:
        cut = data.find(b"\n")
        if 0 <= cut < len(data) - 1:
            data = data[cut + 1 :]
    data, fewer = last_lines(data, lines)
    return Tail(data, truncated or fewer, end)
