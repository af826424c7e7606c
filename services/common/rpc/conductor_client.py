"""Typed clients of the conductor: the api's build caster and compute's reporters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import grpc
from google.protobuf import timestamp_pb2

from services.common.context import request_metadata
from services.common.domain import (
    ComputeNodeReport,
    HostInstance,
    InstanceEvent,
    InstanceEventKind,
    PowerAction,
    PowerState,
    Resources,
    TaskState,
    VmState,
)
from services.common.generated.novagrpc.internal.v1 import conductor_pb2, conductor_pb2_grpc
from services.common.rpc.channels import ChannelPool
from services.common.rpc.retry import with_retries

log = logging.getLogger(__name__)

REPORT_DEADLINE_S = 10.0
# How long the event reporter waits after the first event before it sends: a build on the
# test driver reports "spawning" and "active" a few milliseconds apart, and sending each alone
# cost one call and one conductor write transaction per event (measured: two of each per
# instance). Small beside a real guest's boot; Nova reports these steps over seconds.
EVENT_LINGER_S = 0.01

_EVENT_KINDS = {
    InstanceEventKind.SPAWNING: conductor_pb2.SPAWNING,
    InstanceEventKind.ACTIVE: conductor_pb2.ACTIVE,
    InstanceEventKind.RESCHEDULE: conductor_pb2.RESCHEDULE,
    InstanceEventKind.FAILED: conductor_pb2.FAILED,
    InstanceEventKind.POWER_STATE: conductor_pb2.POWER_STATE,
    InstanceEventKind.DELETED: conductor_pb2.DELETED,
    InstanceEventKind.LOST: conductor_pb2.LOST,
    InstanceEventKind.STOPPED: conductor_pb2.STOPPED,
    InstanceEventKind.STARTED: conductor_pb2.STARTED,
    InstanceEventKind.REBOOTED: conductor_pb2.REBOOTED,
    InstanceEventKind.ACTION_FAILED: conductor_pb2.ACTION_FAILED,
    InstanceEventKind.GUEST_READY: conductor_pb2.GUEST_READY,
}


_POWER_ACTIONS = {
    PowerAction.START: conductor_pb2.START,
    PowerAction.STOP: conductor_pb2.STOP,
    PowerAction.REBOOT_SOFT: conductor_pb2.REBOOT_SOFT,
    PowerAction.REBOOT_HARD: conductor_pb2.REBOOT_HARD,
}


class BuildCaster:
    """Casts accepted creates over one long-lived BuildInstances client stream per conductor.

    ``cast`` only enqueues: the caller never waits for the conductor. One pump per conductor
    takes messages from the shared queue, so a busy or absent conductor leaves the work to the
    others. A message whose write fails goes back to the queue (BuildInstances is idempotent
    by instance uuid, so a duplicate is harmless); one lost after a successful write, with a
    stream that broke later, is re-driven from the database by the conductor's reconciler.
    """

    def __init__(
        self, channels: ChannelPool, addresses: Sequence[str], *, streams_per_address: int = 1
    ) -> None:
        if not addresses:
            raise ValueError("at least one conductor address is needed")
        self._channels = channels
        # A DNS name may stand for several conductors (round_robin spreads the streams).
        self._addresses = [a for a in addresses for _ in range(streams_per_address)]
        self._queue: asyncio.Queue[conductor_pb2.BuildInstancesRequest] = asyncio.Queue()
        self._pumps: list[asyncio.Task[None]] = []
        self._closing = False
        self.sent = 0

    def start(self) -> None:
        for index, address in enumerate(self._addresses):
            self._pumps.append(
                asyncio.create_task(self._pump(address, index), name=f"cast-{address}-{index}")
            )

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def cast(
        self,
        instance_uuids: Sequence[str],
        *,
        reservation_id: str,
        request_id: str,
        admin_password: str = "",
    ) -> None:
        self._queue.put_nowait(
            conductor_pb2.BuildInstancesRequest(
                instance_uuids=list(instance_uuids),
                reservation_id=reservation_id,
                request_id=request_id,
                admin_password=admin_password,
            )
        )

    async def _pump(self, address: str, index: int) -> None:
        backoff = 0.05
        while not self._closing:
            # Its own channel per stream: with a DNS name, each lands on its own conductor.
            stub = conductor_pb2_grpc.ConductorStub(self._channels.get(address, key=str(index)))
            call = stub.BuildInstances(wait_for_ready=True)
            try:
                await self._write_until_broken(call)
                backoff = 0.05
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
                log.warning("BuildInstances stream to %s broke: %s", address, exc)
            finally:
                call.cancel()
            if not self._closing:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _write_until_broken(self, call: grpc.aio.StreamUnaryCall) -> None:  # type: ignore[type-arg]
        await call.wait_for_connection()
        while True:
            message = await self._queue.get()
            try:
                await call.write(message)
            except BaseException:
                # Not known to have left: back to the queue for this or another stream.
                self._queue.put_nowait(message)
                raise
            finally:
                self._queue.task_done()
            self.sent += 1

    async def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (within ``timeout``), then end the streams."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        self._closing = True
        for pump in self._pumps:
            pump.cancel()
        for pump in self._pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        if not self._queue.empty():
            log.warning(
                "%d casts not sent at shutdown; the reconciler will re-drive them",
                self._queue.qsize(),
            )


def _timestamp(event: InstanceEvent) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(event.occurred_at)
    return ts


def event_to_proto(event: InstanceEvent) -> conductor_pb2.InstanceEvent:
    return conductor_pb2.InstanceEvent(
        instance_uuid=event.instance_uuid,
        host=event.host,
        kind=_EVENT_KINDS[event.kind],
        power_state=int(event.power_state),
        reason=event.reason,
        occurred_at=_timestamp(event),
        request_id=event.request_id,
    )


class EventReporter:
    """Compute's ordered, at-least-once path for instance state changes.

    ``report`` enqueues; one sender sends everything queued in one ReportInstanceEvents call and
    retries until the conductor confirms, so events keep their order and are never dropped
    while the process lives. It waits ``linger`` seconds after an idle spell so that events
    that come close together travel together."""

    def __init__(
        self, channels: ChannelPool, addresses: Sequence[str], *, linger: float = EVENT_LINGER_S
    ) -> None:
        self._channels = channels
        self._addresses = list(addresses)
        self._linger = linger
        self._pending: list[InstanceEvent] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._next = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-reporter")

    def report(self, event: InstanceEvent) -> None:
        self._pending.append(event)
        self._idle.clear()
        self._wakeup.set()

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def _stub(self) -> conductor_pb2_grpc.ConductorStub:
        address = self._addresses[self._next % len(self._addresses)]
        return conductor_pb2_grpc.ConductorStub(self._channels.get(address))

    async def _run(self) -> None:
        delay = 0.05
        while True:
            if not self._pending:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                await asyncio.sleep(self._linger)  # let the events close behind it join
                continue
            batch = self._pending[:1000]
            request = conductor_pb2.ReportInstanceEventsRequest(
                events=[event_to_proto(e) for e in batch]
            )
            try:
                await self._stub().ReportInstanceEvents(request, timeout=REPORT_DEADLINE_S)
            except grpc.aio.AioRpcError as exc:
                log.warning("reporting %d events failed (%s); retrying", len(batch), exc.code())
                self._next += 1  # try another conductor next time
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            del self._pending[: len(batch)]

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued event is confirmed; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def node_report_to_proto(report: ComputeNodeReport) -> conductor_pb2.ComputeNodeReport:
    return conductor_pb2.ComputeNodeReport(
        host=report.host,
        hypervisor_hostname=report.hypervisor_hostname,
        rpc_address=report.rpc_address,
        vcpus=report.vcpus,
        memory_mb=report.memory_mb,
        local_gb=report.local_gb,
        hypervisor_type=report.hypervisor_type,
        cpu_arch=report.cpu_arch,
        availability_zone=report.availability_zone,
        cpu_allocation_ratio=report.cpu_allocation_ratio,
        ram_allocation_ratio=report.ram_allocation_ratio,
        disk_allocation_ratio=report.disk_allocation_ratio,
    )


class NodeReporter:
    """Registers the compute node and heartbeats (idempotent: retried on UNAVAILABLE)."""

    def __init__(self, channels: ChannelPool, addresses: Sequence[str]) -> None:
        self._channels = channels
        self._addresses = list(addresses)
        self._next = 0

    async def report(self, report: ComputeNodeReport, request_id: str = "") -> int:
        message = node_report_to_proto(report)
        metadata = request_metadata(request_id)

        async def call() -> int:
            address = self._addresses[self._next % len(self._addresses)]
            self._next += 1
            stub = conductor_pb2_grpc.ConductorStub(self._channels.get(address))
            ack = await stub.ReportComputeNode(
                message, timeout=REPORT_DEADLINE_S, metadata=metadata
            )
            return int(ack.compute_node_id)

        return await with_retries(call)


class ConductorClient:
    """Unary calls to a conductor (tries the next address when one does not answer)."""

    def __init__(self, channels: ChannelPool, addresses: Sequence[str]) -> None:
        self._channels = channels
        self._addresses = list(addresses)
        self._next = 0

    def _stub(self) -> conductor_pb2_grpc.ConductorStub:
        address = self._addresses[self._next % len(self._addresses)]
        self._next += 1
        return conductor_pb2_grpc.ConductorStub(self._channels.get(address))

    async def list_host_instances(self, host: str) -> list[HostInstance]:
        async def call() -> conductor_pb2.ListHostInstancesResponse:
            reply: conductor_pb2.ListHostInstancesResponse = await self._stub().ListHostInstances(
                conductor_pb2.ListHostInstancesRequest(host=host), timeout=REPORT_DEADLINE_S
            )
            return reply

        reply = await with_retries(call)
        return [
            HostInstance(
                uuid=i.instance_uuid,
                vm_state=VmState(i.vm_state),
                task_state=TaskState(i.task_state) if i.task_state else None,
                power_state=PowerState(i.power_state),
                resources=Resources(i.vcpus, i.memory_mb, i.root_gb),
            )
            for i in reply.instances
        ]

    async def delete_instances(self, uuids: Sequence[str], *, request_id: str = "") -> int:
        request = conductor_pb2.DeleteInstancesRequest(
            instance_uuids=list(uuids), request_id=request_id
        )
        metadata = request_metadata(request_id)

        async def call() -> int:
            reply = await self._stub().DeleteInstances(
                request, timeout=REPORT_DEADLINE_S, metadata=metadata
            )
            return int(reply.accepted)

        return await with_retries(call, attempts=3)

    async def power_action(self, uuid: str, action: PowerAction, *, request_id: str = "") -> None:
        """Not retried: a reboot must not happen twice. Errors surface to the caller."""
        request = conductor_pb2.PowerActionRequest(
            instance_uuid=uuid, action=_POWER_ACTIONS[action], request_id=request_id
        )
        metadata = request_metadata(request_id)
        await self._stub().PowerAction(request, timeout=REPORT_DEADLINE_S, metadata=metadata)
