"""Pacing of a long piece of CPU work while other projects' calls are in flight."""

from __future__ import annotations

import pytest

from services.api.admission import Admission
from services.common import pacing
from services.common.pacing import Pacer

pytestmark = pytest.mark.timeout(5)


class Work:
    """A fake thread CPU clock and sleep: ``run`` spends CPU, ``sleep`` records the pauses."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.cpu

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)


def test_work_keeps_to_its_share_while_others_are_busy() -> None:
    work, busy = Work(), [True]
    pace = Pacer(lambda: busy[0], share=0.25, clock=work.clock, sleep=work.sleep)
    for _ in range(10):
        work.cpu += 0.004  # 4 ms of work between checkpoints
        pace()
    # 40 ms of work, 120 ms of pauses: a quarter of the time
    assert sum(work.pauses) == pytest.approx(0.120)
    busy[0] = False
    work.pauses.clear()
    for _ in range(10):
        work.cpu += 0.004
        pace()
    assert work.pauses == []  # alone, it runs flat out


def test_checkpoints_below_a_quantum_do_not_pause() -> None:
    work = Work()
    pace = Pacer(lambda: True, share=0.5, clock=work.clock, sleep=work.sleep)
    work.cpu += 0.0005
    pace()
    assert work.pauses == []
    work.cpu += 0.002  # 2.5 ms since the last pause
    pace()
    assert work.pauses == [pytest.approx(0.0025)]


def test_share_is_checked() -> None:
    with pytest.raises(ValueError, match="share"):
        Pacer(lambda: True, share=0)


def test_admission_says_whether_other_projects_are_served() -> None:
    admission = Admission(calls_per_project=0, streams_per_project=0)
    assert not admission.others_in_flight("flood")
    flood = [admission.enter("flood") for _ in range(3)]
    assert not admission.others_in_flight("flood")  # its own calls do not count
    victim = admission.enter("victim")
    assert admission.others_in_flight("flood") and admission.others_in_flight("victim")
    victim()
    assert not admission.others_in_flight("flood")
    assert admission.others_in_flight("victim")
    for release in flood:
        release()


def test_while_others_are_busy_work_steps_aside_for_a_held_writer_for_a_bounded_time() -> None:
    work, held = Work(), [3]

    def writer_held() -> bool:  # held for three looks, then free
        held[0] -= 1
        return held[0] >= 0

    pace = Pacer(lambda: True, share=1.0, clock=work.clock, sleep=work.sleep, held=writer_held)
    work.cpu += 0.004
    pace()
    assert work.pauses == [pacing.HELD_STEP_S] * 3
    # a writer that stays held is waited for at most HELD_MAX_S per checkpoint
    work.pauses.clear()
    forever = Pacer(lambda: True, share=1.0, clock=work.clock, sleep=work.sleep,
                    held=lambda: True)  # fmt: skip
    work.cpu += 0.004
    forever()
    assert sum(work.pauses) == pytest.approx(pacing.HELD_MAX_S)
    # alone, nothing is waited for
    work.pauses.clear()
    alone = Pacer(lambda: False, share=0.25, clock=work.clock, sleep=work.sleep,
                  held=lambda: True)  # fmt: skip
    work.cpu += 0.004
    alone()
    assert work.pauses == []


def test_a_held_writer_is_stepped_aside_for_at_every_checkpoint_not_once_a_quantum() -> None:
    """Checkpoints come every few dozen rows; a quantum is 2 ms of them. A write transaction
    that started meanwhile waited for the interpreter at each statement until the quantum
    was up (measured: creates of 100 held the writer 80-260 ms instead of 16)."""
    work, held = Work(), [True]

    def step(seconds: float) -> None:  # the writer commits during the second step
        work.pauses.append(seconds)
        held[0] = len(work.pauses) < 2

    pace = Pacer(lambda: True, share=1.0, clock=work.clock, sleep=step, held=lambda: held[0])
    work.cpu += 0.0001  # far below a quantum
    pace()
    assert work.pauses == [pacing.HELD_STEP_S] * 2
