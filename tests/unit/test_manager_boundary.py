"""Compute's build task catches everything at its boundary: an error nobody expected still
ends as a RESCHEDULE report, with the claim released, never lost in the task."""

from __future__ import annotations

import pytest

from services.common.domain import InstanceEventKind, Resources
from services.compute.resource_tracker import Ratios, ResourceTracker
from tests.unit.test_manager import FakeDriver, RecordingSink, build, manager, wait_for_event

pytestmark = pytest.mark.timeout(30)


class BrokenTracker(ResourceTracker):
    """Claims, then fails the way a bug would (not a ClaimRefused)."""

    def claim(self, uuid: str, resources: Resources) -> None:
        super().claim(uuid, resources)
        raise KeyError("a bug in the tracker")


async def test_an_unexpected_error_in_a_build_is_reported_and_its_claim_released() -> None:
    driver, sink = FakeDriver(), RecordingSink()
    tracker = BrokenTracker(Ratios(1.0, 1.0, 1.0))
    tracker.set_capacity(Resources(4, 4096, 40))
    compute = manager(driver, sink, limit=1, tracker=tracker)
    failing = build(1)
    compute.accept([failing])
    await wait_for_event(sink, failing.uuid, InstanceEventKind.RESCHEDULE)
    (event,) = [e for e in sink.events if e.instance_uuid == failing.uuid]
    assert event.reason == "KeyError"
    assert len(tracker) == 0 and failing.uuid not in driver.running
    assert await compute.wait_idle(5) == 0
