"""Compute's readiness report: the hypervisor's agent-connected callback (on its own
thread) becomes one GUEST_READY event on the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from services.common.domain import InstanceEvent, InstanceEventKind
from services.compute.guest_ready import GuestReadiness

pytestmark = pytest.mark.timeout(10)


class Events:
    def __init__(self) -> None:
        self.reported: list[InstanceEvent] = []
        self.arrived = asyncio.Event()

    def report(self, event: InstanceEvent) -> None:
        self.reported.append(event)
        self.arrived.set()


async def test_an_agent_connection_is_reported_as_guest_ready() -> None:
    events = Events()
    readiness = GuestReadiness(events, "compute1", asyncio.get_running_loop())
    thread = threading.Thread(target=readiness.connected, args=("u1",))
    thread.start()
    thread.join()
    await asyncio.wait_for(events.arrived.wait(), 5)
    [event] = events.reported
    assert (event.instance_uuid, event.host, event.kind) == (
        "u1",
        "compute1",
        InstanceEventKind.GUEST_READY,
    )
