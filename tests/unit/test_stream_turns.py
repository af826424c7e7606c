"""Per-project turns at sending on streams: one stream of a project sends at a time, and while
other projects' calls are in flight a project's sending keeps to its share of the time."""

from __future__ import annotations

import asyncio

import pytest

from services.common import pacing, stream_turns
from services.common.stream_turns import StreamTurns

pytestmark = pytest.mark.timeout(5)


class Clock:
    """A fake clock and sleep: ``now`` moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.rests: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.rests.append(seconds)


async def send(turns: StreamTurns, clock: Clock, project: str, *, cost: float) -> None:
    async with turns.turn(project):
        clock.now += cost  # the message's making and its send


async def test_a_project_rests_in_proportion_while_others_are_busy() -> None:
    clock, busy = Clock(), [True]
    turns = StreamTurns(lambda _p: busy[0], share=0.25, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        await send(turns, clock, "a", cost=0.001)
    # 10 ms of sending, rested after every 2 ms (a quantum): three times as long in all
    assert sum(clock.rests) == pytest.approx(0.030)
    assert len(clock.rests) == 10 * 0.001 // stream_turns.QUANTUM_S
    busy[0] = False
    clock.rests.clear()
    for _ in range(10):
        await send(turns, clock, "a", cost=0.001)
    assert clock.rests == []  # alone, it sends flat out


async def test_a_projects_streams_take_turns_and_others_do_not_wait_for_them() -> None:
    turns = StreamTurns(lambda _p: False, share=1.0)
    order: list[str] = []
    a_sending = asyncio.Event()
    a_may_finish = asyncio.Event()

    async def first_a() -> None:
        async with turns.turn("a"):
            order.append("a1 starts")
            a_sending.set()
            await a_may_finish.wait()
            order.append("a1 ends")

    async def second(project: str) -> None:
        async with turns.turn(project):
            order.append(f"{project} sends")

    first = asyncio.create_task(first_a())
    await a_sending.wait()
    other_a = asyncio.create_task(second("a"))
    await second("b")  # another project's stream is not held up
    await asyncio.sleep(0)
    assert order == ["a1 starts", "b sends"]
    assert turns.waiting("a") == 2
    a_may_finish.set()
    await asyncio.gather(first, other_a)
    assert order == ["a1 starts", "b sends", "a1 ends", "a sends"]
    assert turns.waiting("a") == 0


async def test_a_stream_that_ends_mid_turn_does_not_rest_and_frees_the_turn() -> None:
    clock = Clock()
    turns = StreamTurns(lambda _p: True, share=0.25, clock=clock, sleep=clock.sleep)
    with pytest.raises(RuntimeError):
        async with turns.turn("a"):
            clock.now += 0.010
            raise RuntimeError("client went away")
    assert clock.rests == []
    assert turns.waiting("a") == 0
    await send(turns, clock, "a", cost=0.0)  # the turn is free


async def test_while_the_writer_is_held_a_projects_next_turn_waits_a_bounded_time() -> None:
    clock, held = Clock(), [True]

    async def step(seconds: float) -> None:  # the writer commits during the third step
        clock.rests.append(seconds)
        held[0] = len(clock.rests) < 3

    turns = StreamTurns(lambda _p: True, share=1.0, clock=clock, sleep=step,
                        held=lambda: held[0])  # fmt: skip
    await send(turns, clock, "a", cost=0.0001)
    assert clock.rests == [pacing.HELD_STEP_S] * 3
    clock.rests.clear()
    forever = StreamTurns(lambda _p: True, share=1.0, clock=clock, sleep=clock.sleep,
                          held=lambda: True)  # fmt: skip
    await send(forever, clock, "a", cost=0.0001)
    assert sum(clock.rests) == pytest.approx(pacing.HELD_MAX_S)


def test_share_is_checked() -> None:
    with pytest.raises(ValueError, match="share"):
        StreamTurns(lambda _p: True, share=0)
