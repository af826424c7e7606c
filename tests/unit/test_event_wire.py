"""Compute's instance events on the wire to the conductor and back."""

from __future__ import annotations

import pytest

from services.common.domain import InstanceEvent, InstanceEventKind, PowerAction, utcnow
from services.common.rpc.conductor_client import event_to_proto
from services.conductor.servicer import event_from_proto

pytestmark = pytest.mark.timeout(10)


def test_a_reschedule_carries_the_admin_password_to_whichever_conductor_takes_it() -> None:
    event = InstanceEvent(
        instance_uuid="00000000-0000-0000-0000-000000000007", host="h1",
        kind=InstanceEventKind.RESCHEDULE, occurred_at=utcnow(), reason="no space",
        request_id="req-1", admin_password="s3cret",
    )  # fmt: skip
    assert event_from_proto(event_to_proto(event)) == event


def test_a_failed_power_action_names_the_action() -> None:
    event = InstanceEvent(
        instance_uuid="00000000-0000-0000-0000-000000000007", host="h1",
        kind=InstanceEventKind.ACTION_FAILED, occurred_at=utcnow(), reason="timeout",
        power_action=PowerAction.STOP,
    )  # fmt: skip
    assert event_from_proto(event_to_proto(event)) == event
