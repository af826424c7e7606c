"""The scale-out benchmark's throughput model: N conductors on M cores."""

from __future__ import annotations

import pytest

from bench.scale_out import Round, Snapshot, _summary
from bench.scale_out_model import Bound, Costs, predict

# CPU-ms per instance: conductors 2, PostgreSQL 1, api 0.5, computes 1.5
COSTS = Costs(conductor=2.0, postgres=1.0, api=0.5, compute=1.5)


def test_one_conductor_is_held_to_one_core() -> None:
    guess = predict(COSTS, conductors=1, cores=16)
    assert guess.bound is Bound.CONDUCTORS
    assert guess.per_second == pytest.approx(500.0)  # 1,000 ms / 2 ms


def test_enough_conductors_meet_the_cores() -> None:
    guess = predict(COSTS, conductors=16, cores=4)
    assert guess.bound is Bound.CORES
    assert guess.per_second == pytest.approx(4 * 1000 / 3.5)  # conductor + postgres + api


def test_what_shares_the_cores_is_counted() -> None:
    alone = predict(COSTS, conductors=4, cores=2, api=False)
    everything = predict(COSTS, conductors=4, cores=2, compute=True)
    assert alone.per_second == pytest.approx(2000 / 3.0)
    assert everything.per_second == pytest.approx(2000 / 5.0)


def test_more_cores_help_only_up_to_the_conductors() -> None:
    rates = [predict(COSTS, conductors=4, cores=m).per_second for m in (1, 2, 4, 8, 16)]
    assert rates == sorted(rates)
    assert rates[-1] == pytest.approx(2000.0)  # four conductors at one core each


@pytest.mark.parametrize(("conductors", "cores"), [(0, 2), (1, 0)])
def test_nonsense_is_refused(conductors: int, cores: float) -> None:
    with pytest.raises(ValueError, match="conductors"):
        predict(COSTS, conductors=conductors, cores=cores)


def test_per_instance_cpu_leaves_out_what_the_fleet_burns_idle() -> None:
    fleet = Round(conductors=2, launcher=None, url="", api="", metrics=[])  # type: ignore
    fleet.snapshots = [
        # 2 s idle: the conductors burn 0.1 CPU-s per second doing nothing
        Snapshot(0.0, {"conductor": 1.0, "api": 1.0}, {"bench-conductor": 0.0}, 100.0),
        Snapshot(2.0, {"conductor": 1.2, "api": 1.0}, {"bench-conductor": 0.0}, 100.4),
        # placed after 1 s, settled after 4 s: 100 instances
        Snapshot(3.0, {"conductor": 1.6, "api": 1.5}, {"bench-conductor": 0.2}, 102.0),
        Snapshot(6.0, {"conductor": 2.6, "api": 1.6}, {"bench-conductor": 0.5}, 108.0),
    ]
    counters = {"nova_grpc_claim_conflicts_total": 7.0}
    summary = _summary(fleet, 100, placed=90, error=10, counters=counters)
    # 1.4 CPU-s in 4 s, less 0.4 idle: 1.0 CPU-s for 100 instances
    assert summary["ms"]["conductor"] == pytest.approx(10.0)
    assert summary["ms"]["api"] == pytest.approx(6.0)
    assert summary["ms"]["postgres_conductor"] == pytest.approx(5.0)
    assert summary["claim_conflicts"] == 7
    assert summary["placing_s"] == pytest.approx(1.0)
    # the machine was busy 7.6 CPU-s, ours 1.4 + 0.6 + 0.5: others kept 5.1 CPU-s in 4 s
    assert summary["others_cores"] == pytest.approx(5.1 / 4)
