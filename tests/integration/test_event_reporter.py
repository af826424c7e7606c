"""Compute's event reporter against a real gRPC server on port 0: events that come close
together travel in one call, in order, and nothing is dropped when the conductor fails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from services.common.domain import InstanceEvent, InstanceEventKind, utcnow
from services.common.generated.novagrpc.internal.v1 import conductor_pb2, conductor_pb2_grpc
from services.common.rpc.channels import ChannelPool
from services.common.rpc.conductor_client import EventReporter
from tests.support.polling import turns

pytestmark = pytest.mark.timeout(30)


class RecordingConductor(conductor_pb2_grpc.ConductorServicer):  # type: ignore[misc]
    """Records each ReportInstanceEvents call; fails the first ``failures`` of them."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[list[tuple[str, int]]] = []
        self.failures = failures

    async def ReportInstanceEvents(
        self, request: conductor_pb2.ReportInstanceEventsRequest, context: Any
    ) -> conductor_pb2.ReportInstanceEventsResponse:
        if self.failures:
            self.failures -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "conductor restarting")
        self.calls.append([(e.instance_uuid, e.kind) for e in request.events])
        return conductor_pb2.ReportInstanceEventsResponse(applied=len(request.events))


async def _serve(conductor: RecordingConductor) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    conductor_pb2_grpc.add_ConductorServicer_to_server(conductor, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def event(uuid: str, kind: InstanceEventKind) -> InstanceEvent:
    return InstanceEvent(uuid, "host-a", kind, utcnow())


@pytest.fixture
async def channels() -> AsyncIterator[ChannelPool]:
    pool = ChannelPool()
    yield pool
    await pool.close()


async def test_events_close_together_travel_in_one_call(channels: ChannelPool) -> None:
    conductor = RecordingConductor()
    server, address = await _serve(conductor)
    reporter = EventReporter(channels, [address], linger=0.05)
    reporter.start()
    await turns()  # idle, as a compute between builds
    try:
        reporter.report(event("a", InstanceEventKind.SPAWNING))
        # the build runs on: the reporter wakes and lingers; without the linger it would
        # have sent SPAWNING alone within these turns (no clock: a few task switches)
        await turns(3)
        reporter.report(event("a", InstanceEventKind.ACTIVE))
        assert await reporter.flush(10)
    finally:
        await reporter.close()
        await server.stop(None)
    spawning = conductor_pb2.INSTANCE_EVENT_KIND_SPAWNING
    active = conductor_pb2.INSTANCE_EVENT_KIND_ACTIVE
    assert conductor.calls == [[("a", spawning), ("a", active)]]


async def test_a_failed_call_is_retried_with_every_event_in_order(channels: ChannelPool) -> None:
    conductor = RecordingConductor(failures=2)
    server, address = await _serve(conductor)
    reporter = EventReporter(channels, [address], linger=0.0)
    reporter.start()
    try:
        for uuid in ("a", "b", "c"):
            reporter.report(event(uuid, InstanceEventKind.ACTIVE))
        assert await reporter.flush(10)
    finally:
        await reporter.close()
        await server.stop(None)
    delivered = [uuid for call in conductor.calls for uuid, _ in call]
    assert delivered == ["a", "b", "c"]


class RefusingConductor(RecordingConductor):
    """Refuses any call that carries an event of ``foreign`` (as the conductor refuses a
    compute's report on an instance not placed on its host)."""

    def __init__(self, foreign: str) -> None:
        super().__init__()
        self.foreign = foreign

    async def ReportInstanceEvents(
        self, request: conductor_pb2.ReportInstanceEventsRequest, context: Any
    ) -> conductor_pb2.ReportInstanceEventsResponse:
        if any(e.instance_uuid == self.foreign for e in request.events):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not placed on this host")
        return await super().ReportInstanceEvents(request, context)


async def test_a_refused_event_is_dropped_and_holds_back_nothing(channels: ChannelPool) -> None:
    conductor = RefusingConductor(foreign="other")
    server, address = await _serve(conductor)
    reporter = EventReporter(channels, [address], linger=0.05)
    reporter.start()
    try:
        for uuid in ("a", "other", "b"):
            reporter.report(event(uuid, InstanceEventKind.ACTIVE))
        assert await reporter.flush(10)
        reporter.report(event("c", InstanceEventKind.ACTIVE))  # batching resumes after
        assert await reporter.flush(10)
    finally:
        await reporter.close()
        await server.stop(None)
    delivered = [uuid for call in conductor.calls for uuid, _ in call]
    assert delivered == ["a", "b", "c"]
