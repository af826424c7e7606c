"""The collector tuned once a service has started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.common.gc_tuning import MIDDLE_EVERY, OLD_EVERY, tune_collector

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def restored_collector() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_collector")
def test_objects_alive_at_start_leave_the_collectors_sight() -> None:
    kept_for_life = [[] for _ in range(1000)]  # cyclic-GC-tracked objects
    tune_collector(young_objects=20_000)
    assert gc.get_freeze_count() >= len(kept_for_life)
    assert gc.get_threshold() == (20_000, MIDDLE_EVERY, OLD_EVERY)
