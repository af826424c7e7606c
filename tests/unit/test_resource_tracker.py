from __future__ import annotations

import random

import pytest

from services.common.domain import ZERO, Resources
from services.compute.resource_tracker import ClaimRefused, Ratios, ResourceTracker


def total(claims: dict[str, Resources]) -> Resources:
    used = ZERO
    for claimed in claims.values():
        used = used + claimed
    return used


def test_running_total_is_the_sum_of_claims_after_claim_restore_and_release() -> None:
    tracker = ResourceTracker(Ratios(1.0, 1.0, 1.0))
    model: dict[str, Resources] = {}

    tracker.claim("a", Resources(1, 512, 1))
    model["a"] = Resources(1, 512, 1)
    tracker.claim("a", Resources(8, 8192, 80))  # idempotent: the first claim stands
    tracker.claim("b", Resources(2, 1024, 10))
    model["b"] = Resources(2, 1024, 10)
    tracker.restore("c", Resources(4, 2048, 20))
    model["c"] = Resources(4, 2048, 20)
    tracker.restore("b", Resources(3, 3072, 30))  # replaces b's claim, not added to it
    model["b"] = Resources(3, 3072, 30)
    assert tracker.release("unknown") is False
    assert tracker.release("a") is True
    del model["a"]
    assert tracker.release("a") is False  # a second release takes nothing twice

    assert tracker.used == total(model) == Resources(7, 5120, 50)
    assert len(tracker) == len(model)


def test_running_total_matches_the_sum_over_a_random_mix() -> None:
    rng = random.Random(7)
    tracker = ResourceTracker(Ratios(1.0, 1.0, 1.0))
    model: dict[str, Resources] = {}
    for _ in range(2000):
        uuid = f"i{rng.randrange(40)}"
        request = Resources(rng.randrange(1, 9), rng.randrange(1, 9) * 512, rng.randrange(1, 41))
        op = rng.randrange(3)
        if op == 0:
            tracker.claim(uuid, request)
            model.setdefault(uuid, request)
        elif op == 1:
            tracker.restore(uuid, request)
            model[uuid] = request
        else:
            assert tracker.release(uuid) is (model.pop(uuid, None) is not None)
        assert tracker.used == total(model)


def test_a_claim_is_refused_against_the_running_total_and_fits_after_a_release() -> None:
    tracker = ResourceTracker(Ratios(1.0, 1.0, 1.0))
    tracker.set_capacity(Resources(4, 4096, 40))
    tracker.claim("a", Resources(2, 2048, 20))
    tracker.restore("b", Resources(2, 1024, 10))
    with pytest.raises(ClaimRefused, match="host has 0 free vCPUs, 1 requested"):
        tracker.claim("c", Resources(1, 512, 5))
    tracker.release("a")
    tracker.claim("c", Resources(1, 512, 5))
    assert tracker.used == Resources(3, 1536, 15)
