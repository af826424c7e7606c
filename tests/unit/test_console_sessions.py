"""Compute's console sessions with a hand-written console double: output, takeover,
backpressure and a clean end however the session ends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.common.errors import Aborted, Unavailable, WrongState
from services.compute.console.sessions import ConsoleSessions
from tests.support.consoles import EchoConsoles

pytestmark = pytest.mark.timeout(10)


async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(function, *args)


async def test_typed_bytes_come_back_and_detach_frees_the_stream(tmp_path: Path) -> None:
    consoles = EchoConsoles(tmp_path)
    sessions = ConsoleSessions(consoles, in_thread)
    session = await sessions.attach("u1")
    await sessions.write(session, b"echo hi\r")
    assert await asyncio.wait_for(session.read(), 5) == b"echo hi\r"
    assert [s.uuid for s in sessions.open_sessions] == ["u1"]
    await sessions.detach(session)
    assert consoles.open_handles == 0 and sessions.open_sessions == []
    assert await session.read() is None and session.outcome() is None


async def test_a_second_session_takes_over_and_the_first_ends_aborted(tmp_path: Path) -> None:
    consoles = EchoConsoles(tmp_path)
    sessions = ConsoleSessions(consoles, in_thread)
    first = await sessions.attach("u1")
    second = await sessions.attach("u1")
    assert await asyncio.wait_for(first.read(), 5) is None
    assert isinstance(first.outcome(), Aborted)
    await sessions.detach(first)  # the first RPC's cleanup must not end the second
    await sessions.write(second, b"x")
    assert await asyncio.wait_for(second.read(), 5) == b"x"
    await sessions.detach(second)
    assert consoles.open_handles == 0


async def test_the_guest_going_away_ends_the_session_cleanly(tmp_path: Path) -> None:
    consoles = EchoConsoles(tmp_path)
    sessions = ConsoleSessions(consoles, in_thread)
    session = await sessions.attach("u1")
    consoles.stop_guest("u1")
    assert await asyncio.wait_for(session.read(), 5) is None
    assert session.outcome() is None  # an OK end: the guest's side closed
    await sessions.detach(session)
    assert consoles.open_handles == 0


async def test_a_refused_attach_leaves_the_current_session_alone(tmp_path: Path) -> None:
    consoles = EchoConsoles(tmp_path)
    sessions = ConsoleSessions(consoles, in_thread)
    with pytest.raises(WrongState):
        await sessions.attach("stopped-1")
    assert consoles.open_handles == 0 and sessions.open_sessions == []


async def test_a_slow_reader_pauses_the_guest_and_resumes_it(tmp_path: Path) -> None:
    consoles = EchoConsoles(tmp_path)
    sessions = ConsoleSessions(consoles, in_thread, high_water_bytes=10)
    session = await sessions.attach("u1")
    for _ in range(4):
        await sessions.write(session, b"12345")
    assert consoles.pauses == [True]
    for _ in range(4):
        assert await asyncio.wait_for(session.read(), 5) == b"12345"
    assert consoles.pauses == [True, False]
    await sessions.detach(session)


async def test_stopping_the_service_ends_every_session_unavailable(tmp_path: Path) -> None:
    consoles = EchoConsoles(tmp_path)
    sessions = ConsoleSessions(consoles, in_thread)
    opened = [await sessions.attach(f"u{i}") for i in range(3)]
    await sessions.close()
    assert consoles.open_handles == 0
    for session in opened:
        assert await session.read() is None
        assert isinstance(session.outcome(), Unavailable)


async def test_an_attach_cancelled_while_opening_closes_what_it_opened(tmp_path: Path) -> None:
    consoles = EchoConsoles(tmp_path)
    release = asyncio.Event()
    closed = asyncio.Event()

    async def slow(function: Callable[..., Any], *args: Any) -> Any:
        if function == consoles.open_console:
            await release.wait()
        result = await asyncio.to_thread(function, *args)
        if getattr(function, "__name__", "") == "close":
            closed.set()
        return result

    sessions = ConsoleSessions(consoles, slow)
    attaching = asyncio.create_task(sessions.attach("u1"))
    await asyncio.sleep(0)  # let it start opening
    attaching.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await attaching
    await asyncio.wait_for(closed.wait(), 5)
    assert consoles.opened == 1 and consoles.open_handles == 0
    assert sessions.open_sessions == []


async def test_a_stream_the_hypervisor_drops_while_the_guest_runs_is_reopened(
    tmp_path: Path,
) -> None:
    consoles = EchoConsoles(tmp_path)
    sessions = ConsoleSessions(consoles, in_thread)
    session = await sessions.attach("u1")
    for attempt in range(3):
        consoles.drop_stream("u1")
        assert await asyncio.wait_for(session.read(), 5) is None
        assert await sessions.reopen(session)
        await sessions.write(session, b"again %d" % attempt)
        assert await asyncio.wait_for(session.read(), 5) == b"again %d" % attempt
    assert consoles.opened == 4 and consoles.open_handles == 1
    consoles.drop_stream("u1")
    assert await asyncio.wait_for(session.read(), 5) is None
    assert not await sessions.reopen(session)  # a fourth drop within a minute: it ends
    await sessions.detach(session)
    assert consoles.open_handles == 0


async def test_a_stopped_guest_is_not_reopened(tmp_path: Path) -> None:
    consoles = EchoConsoles(tmp_path)
    sessions = ConsoleSessions(consoles, in_thread)
    session = await sessions.attach("u1")
    consoles.stop_guest("u1")
    assert await asyncio.wait_for(session.read(), 5) is None
    assert not await sessions.reopen(session)
    assert session.outcome() is None
    await sessions.detach(session)
    assert consoles.open_handles == 0
