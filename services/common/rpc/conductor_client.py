"""Typed clients of the conductor: the api's build caster and compute's reporters.

The unary calls' gRPC errors leave as PeerFailed (HostUnreachable, PeerRefused); the two
background senders (BuildCaster, EventReporter) keep theirs inside, where they retry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from services.common.context import request_metadata
from services.common.domain import (
    ComputeNodeReport,
    HostInstance,
    InstanceEvent,
    InstanceEventKind,
    PowerAction,
)
from services.common.generated.novagrpc.internal.v1 import conductor_pb2, conductor_pb2_grpc
from services.common.rpc.channels import ChannelPool
from services.common.rpc.client_errors import wrap_errors
from services.common.rpc.host_inventory import host_instances_from_proto
from services.common.rpc.power_actions import POWER_ACTION_KINDS
from services.common.rpc.retry import with_retries

log = logging.getLogger(__name__)

REPORT_DEADLINE_S = 10.0
# How long the event reporter waits after the first event before it sends: a build on the
# test driver reports "spawning" and "active" a few milliseconds apart, and sending each alone
# cost one call and one conductor write transaction per event (measured: two of each per
# instance). Small beside a real guest's boot; Nova reports these steps over seconds.
EVENT_LINGER_S = 0.01

_EVENT_KINDS = {
    InstanceEventKind.SPAWNING: conductor_pb2.INSTANCE_EVENT_KIND_SPAWNING,
    InstanceEventKind.ACTIVE: conductor_pb2.INSTANCE_EVENT_KIND_ACTIVE,
    InstanceEventKind.RESCHEDULE: conductor_pb2.INSTANCE_EVENT_KIND_RESCHEDULE,
    InstanceEventKind.FAILED: conductor_pb2.INSTANCE_EVENT_KIND_FAILED,
    InstanceEventKind.POWER_STATE: conductor_pb2.INSTANCE_EVENT_KIND_POWER_STATE,
    InstanceEventKind.DELETED: conductor_pb2.INSTANCE_EVENT_KIND_DELETED,
    InstanceEventKind.LOST: conductor_pb2.INSTANCE_EVENT_KIND_LOST,
    InstanceEventKind.STOPPED: conductor_pb2.INSTANCE_EVENT_KIND_STOPPED,
    InstanceEventKind.STARTED: conductor_pb2.INSTANCE_EVENT_KIND_STARTED,
    InstanceEventKind.REBOOTED: conductor_pb2.INSTANCE_EVENT_KIND_REBOOTED,
    InstanceEventKind.ACTION_FAILED: conductor_pb2.INSTANCE_EVENT_KIND_ACTION_FAILED,
    InstanceEventKind.GUEST_READY: conductor_pb2.INSTANCE_EVENT_KIND_GUEST_READY,
}


class BuildCaster:
    """Casts accepted creates over long-lived BuildInstances client streams to the conductors.

    ``cast`` only enqueues: the caller never waits for a conductor. One pump per stream takes
    messages from the shared queue, so a busy or absent conductor leaves the work to the
    others. Delivery is at least once (BuildInstances is idempotent by instance uuid, so a
    duplicate is harmless): each stream keeps what it wrote, and when the conductor ends the
    stream (after its ``build_stream_max_age``, or because it drains) its summary says how
    many messages it read; the rest go back to the queue, and the pump opens its next stream
    at once, which its channel may place on another conductor (that is how conductors added
    later get builds). A stream that breaks puts everything it wrote back. What is lost with
    the api itself the conductors' reconciler re-drives from the database.
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
        self._closing = asyncio.Event()
        self.sent = 0
        self.resent = 0  # written to a stream that ended or broke before reading them

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
        while not self._closing.is_set():
            # Its own channel per stream: with a DNS name, each lands on its own conductor.
            stub = conductor_pb2_grpc.ConductorStub(self._channels.get(address, key=str(index)))
            call = stub.BuildInstances(wait_for_ready=True)
            written: list[conductor_pb2.BuildInstancesRequest] = []
            try:
                summary = await self._write_until_ended(call, written)
                self._give_back(written[summary.messages :])
                if summary.messages or not written:
                    backoff = 0.05
                    continue  # ended by the conductor: the next stream at once
            except (
                grpc.aio.AioRpcError,
                grpc.aio.UsageError,
                asyncio.InvalidStateError,
                TimeoutError,
            ) as exc:
                log.warning("BuildInstances stream to %s broke: %s", address, exc)
                self._give_back(written)
            finally:
                call.cancel()
            if not self._closing.is_set():
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def _give_back(self, messages: Sequence[conductor_pb2.BuildInstancesRequest]) -> None:
        """Messages a conductor may not have read: back in the queue, for any stream (the
        conductor dedupes by instance uuid)."""
        for message in messages:
            self._queue.put_nowait(message)
        self.resent += len(messages)

    async def _write_until_ended(
        self,
        call: grpc.aio.StreamUnaryCall,  # type: ignore[type-arg]
        written: list[conductor_pb2.BuildInstancesRequest],
    ) -> conductor_pb2.BuildInstancesSummary:
        """Write queued messages until the conductor ends the stream (its summary) or the
        caster closes (half-close, then the summary)."""
        await call.wait_for_connection()
        ended: asyncio.Future[Any] = asyncio.ensure_future(call)
        ended.add_done_callback(_retrieved)  # it may end with the call's error, seen elsewhere
        closing: asyncio.Future[Any] = asyncio.ensure_future(self._closing.wait())
        try:
            while True:
                taking: asyncio.Future[Any] = asyncio.ensure_future(self._queue.get())
                await asyncio.wait({taking, ended, closing}, return_when=asyncio.FIRST_COMPLETED)
                if not taking.done():
                    taking.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await taking
                if taking.done() and not taking.cancelled():
                    message = taking.result()
                    if ended.done() or closing.done():
                        self._queue.put_nowait(message)  # not ours to write any more
                        self._queue.task_done()
                    else:
                        try:
                            await self._write(call, message)
                        except (
                            grpc.aio.AioRpcError,
                            grpc.aio.UsageError,
                            asyncio.InvalidStateError,
                        ):
                            # the conductor may have ended the stream meanwhile: then its
                            # summary says what it read; otherwise the call's error is raised
                            return await asyncio.wait_for(asyncio.shield(ended), 5.0)  # type: ignore[no-any-return]
                        written.append(message)
                        continue
                if closing.done() and not ended.done():
                    await call.done_writing()
                summary: conductor_pb2.BuildInstancesSummary = await ended
                return summary
        finally:
            closing.cancel()
            if not ended.done():
                ended.cancel()

    async def _write(
        self,
        call: grpc.aio.StreamUnaryCall,  # type: ignore[type-arg]
        message: conductor_pb2.BuildInstancesRequest,
    ) -> None:
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
        """Send what is queued (within ``timeout``), end the streams (each conductor answers
        once it has read everything), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        self._closing.set()
        _, pending = await asyncio.wait(self._pumps, timeout=timeout)
        for pump in pending:
            pump.cancel()
        for pump in self._pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        if not self._queue.empty():
            log.warning(
                "%d casts not sent at shutdown; the reconciler will re-drive them",
                self._queue.qsize(),
            )


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


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
        power_action=(
            POWER_ACTION_KINDS[event.power_action]
            if event.power_action is not None
            else conductor_pb2.POWER_ACTION_KIND_UNSPECIFIED
        ),
        admin_password=event.admin_password,
    )


# Statuses a resend cannot change: the events are the caller's fault, not the network's.
REFUSED = frozenset({grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT})


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
        # Events still to send one at a time, to find those the conductor refuses.
        self._isolating = 0

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
            batch = self._pending[: 1 if self._isolating else 1000]
            request = conductor_pb2.ReportInstanceEventsRequest(
                events=[event_to_proto(e) for e in batch]
            )
            try:
                await self._stub().ReportInstanceEvents(request, timeout=REPORT_DEADLINE_S)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in REFUSED:
                    # Never accepted however often it is sent: find the refused events one at
                    # a time and drop them, so that they do not hold back every later one.
                    if len(batch) > 1:
                        self._isolating = len(batch)
                    else:
                        log.error("the conductor refused an event (%s: %s); dropped: %s",
                                  exc.code().name, exc.details(), batch[0])  # fmt: skip
                        del self._pending[:1]
                        self._isolating = max(0, self._isolating - 1)
                    continue
                log.warning("reporting %d events failed (%s); retrying", len(batch), exc.code())
                self._next += 1  # try another conductor next time
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            del self._pending[: len(batch)]
            if self._isolating:
                self._isolating -= 1

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


def node_report_to_proto(report: ComputeNodeReport) -> conductor_pb2.ReportComputeNodeRequest:
    return conductor_pb2.ReportComputeNodeRequest(
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
        underlay_address=report.underlay_address,
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

        with wrap_errors("conductor"):
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

        with wrap_errors("conductor"):
            reply = await with_retries(call)
        return host_instances_from_proto(reply)

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

        with wrap_errors("conductor"):
            return await with_retries(call, attempts=3)

    async def refresh_port_rules(
        self, group_ids: Sequence[str], instance_uuids: Sequence[str] = ()
    ) -> None:
        request = conductor_pb2.RefreshPortRulesRequest(
            group_ids=list(group_ids), instance_uuids=list(instance_uuids)
        )

        async def call() -> None:
            await self._stub().RefreshPortRules(request, timeout=REPORT_DEADLINE_S)

        with wrap_errors("conductor"):
            await with_retries(call, attempts=3)

    async def power_action(self, uuid: str, action: PowerAction, *, request_id: str = "") -> None:
        """Not retried: a reboot must not happen twice. Errors surface to the caller."""
        request = conductor_pb2.PowerActionRequest(
            instance_uuid=uuid, action=POWER_ACTION_KINDS[action], request_id=request_id
        )
        metadata = request_metadata(request_id)
        with wrap_errors("conductor"):
            await self._stub().PowerAction(request, timeout=REPORT_DEADLINE_S, metadata=metadata)
