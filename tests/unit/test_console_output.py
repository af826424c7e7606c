"""The console log tail: line and size bounds, partial lines, and the follower."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from services.common.errors import InvalidArgument, WrongState
from services.compute.console.output import ConsoleOutput, check_bounds
from services.compute.console.tail import MAX_CONSOLE_BYTES, last_lines, read_tail

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("data", "lines", "expected", "cut"),
    [
        (b"a\nb\nc\n", 2, b"b\nc\n", True),
        (b"a\nb\nc", 2, b"b\nc", True),
        (b"a\nb\nc\n", 3, b"a\nb\nc\n", False),
        (b"a\nb\nc\n", 5, b"a\nb\nc\n", False),
        (b"a\nb\nc\n", 0, b"a\nb\nc\n", False),
        (b"", 3, b"", False),
        (b"\n\n\n", 1, b"\n", True),
        (b"only", 1, b"only", False),
    ],
)
def test_last_lines(data: bytes, lines: int, expected: bytes, cut: bool) -> None:
    assert last_lines(data, lines) == (expected, cut)


def test_read_tail_never_reads_more_than_the_bound(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_bytes(b"".join(b"line %06d\n" % i for i in range(100_000)))  # ~1.2 MB
    tail = read_tail(log, lines=0, max_bytes=1000)
    assert len(tail.data) <= 1000 and tail.truncated
    assert tail.data.startswith(b"line ") and tail.data.endswith(b"line 099999\n")
    assert tail.end == log.stat().st_size
    few = read_tail(log, lines=3, max_bytes=MAX_CONSOLE_BYTES)
    assert few.data == b"line 099997\nline 099998\nline 099999\n" and few.truncated


def test_read_tail_of_a_small_log_is_all_of_it(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_bytes(b"boot\n\xff\xfe binary\nlast")
    tail = read_tail(log, lines=0)
    assert tail.data == b"boot\n\xff\xfe binary\nlast" and not tail.truncated


@pytest.mark.parametrize("lines", [-1, 10_001])
def test_lines_out_of_range_names_the_field(lines: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_bounds(lines, 0)
    assert caught.value.field == "lines"


def test_the_byte_bound_is_capped() -> None:
    assert check_bounds(10, 0) == MAX_CONSOLE_BYTES
    assert check_bounds(10, 10 * MAX_CONSOLE_BYTES) == MAX_CONSOLE_BYTES
    assert check_bounds(10, 512) == 512


class FileConsoles:
    """Hand-written double of the console port: one directory, one log per uuid."""

    def __init__(self, root: Path, *, refuse: bool = False) -> None:
        self.root = root
        self.refuse = refuse

    def console_log(self, uuid: str) -> Path:
        if self.refuse:
            raise WrongState("no console on this hypervisor")
        return self.root / uuid / "console.log"


async def inline(function: Callable[..., Any], *args: Any) -> Any:
    return function(*args)


async def test_follow_streams_appends_and_ends_when_the_log_is_removed(tmp_path: Path) -> None:
    directory = tmp_path / "u1"
    directory.mkdir()
    log = directory / "console.log"
    log.write_bytes(b"first\nsecond\n")
    output = ConsoleOutput(FileConsoles(tmp_path), inline, poll_interval=timedelta(milliseconds=5))
    stream = output.follow("u1", lines=1)
    first = await asyncio.wait_for(anext(stream), 5)
    assert first.data == b"second\n" and first.truncated
    with log.open("ab") as writer:
        writer.write(b"third\n")
    assert (await asyncio.wait_for(anext(stream), 5)).data == b"third\n"
    log.write_bytes(b"rotated\n")  # shorter than what was read: start again
    assert (await asyncio.wait_for(anext(stream), 5)).data == b"rotated\n"
    log.unlink()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(stream), 5)


async def test_a_missing_log_is_empty_output_and_refusals_pass_through(tmp_path: Path) -> None:
    output = ConsoleOutput(FileConsoles(tmp_path), inline)
    empty = await output.tail("absent", lines=10)
    assert empty.data == b"" and not empty.truncated
    refusing = ConsoleOutput(FileConsoles(tmp_path, refuse=True), inline)
    with pytest.raises(WrongState):
        await refusing.tail("u1", lines=10)
