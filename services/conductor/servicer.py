"""The internal Conductor service: protobuf stops here."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from typing import Any

import grpc

from services.common.domain import (
    ComputeNodeReport,
    InstanceEvent,
    InstanceEventKind,
    PowerState,
)
from services.common.errors import InvalidArgument
from services.common.generated.novagrpc.internal.v1 import conductor_pb2, conductor_pb2_grpc
from services.common.identity import ServiceRole
from services.common.rpc.convert import from_timestamp
from services.common.rpc.host_inventory import host_instances_to_proto
from services.common.rpc.peers import CallerPolicy, deny, peer_identity
from services.common.rpc.power_actions import POWER_ACTIONS
from services.conductor.build_task import BuildTask
from services.conductor.deletes import DeleteInstances
from services.conductor.events import InstanceEvents
from services.conductor.host_scope import HostScope
from services.conductor.nodes import ComputeNodes
from services.conductor.port_rules import PortRulesFanOut
from services.conductor.power import PowerActions
from services.conductor.streams import BuildStreams, StreamEnded

log = logging.getLogger(__name__)

_KINDS = {
    conductor_pb2.INSTANCE_EVENT_KIND_SPAWNING: InstanceEventKind.SPAWNING,
    conductor_pb2.INSTANCE_EVENT_KIND_ACTIVE: InstanceEventKind.ACTIVE,
    conductor_pb2.INSTANCE_EVENT_KIND_RESCHEDULE: InstanceEventKind.RESCHEDULE,
    conductor_pb2.INSTANCE_EVENT_KIND_FAILED: InstanceEventKind.FAILED,
    conductor_pb2.INSTANCE_EVENT_KIND_POWER_STATE: InstanceEventKind.POWER_STATE,
    conductor_pb2.INSTANCE_EVENT_KIND_DELETED: InstanceEventKind.DELETED,
    conductor_pb2.INSTANCE_EVENT_KIND_LOST: InstanceEventKind.LOST,
    conductor_pb2.INSTANCE_EVENT_KIND_STOPPED: InstanceEventKind.STOPPED,
    conductor_pb2.INSTANCE_EVENT_KIND_STARTED: InstanceEventKind.STARTED,
    conductor_pb2.INSTANCE_EVENT_KIND_REBOOTED: InstanceEventKind.REBOOTED,
    conductor_pb2.INSTANCE_EVENT_KIND_ACTION_FAILED: InstanceEventKind.ACTION_FAILED,
    conductor_pb2.INSTANCE_EVENT_KIND_GUEST_READY: InstanceEventKind.GUEST_READY,
}


_SERVICE = conductor_pb2.DESCRIPTOR.services_by_name["Conductor"].full_name
_API, _COMPUTE = frozenset({ServiceRole.API}), frozenset({ServiceRole.COMPUTE})

# Who may call what (checked from the caller's certificate when internal TLS is on).
CALLERS: CallerPolicy = {
    f"/{_SERVICE}/BuildInstances": _API,
    f"/{_SERVICE}/DeleteInstances": _API,
    f"/{_SERVICE}/PowerAction": _API,
    f"/{_SERVICE}/ReportInstanceEvents": _COMPUTE,
    f"/{_SERVICE}/ReportComputeNode": _COMPUTE,
    f"/{_SERVICE}/ListHostInstances": _COMPUTE,
    f"/{_SERVICE}/RefreshPortRules": _API,
}


def _check_host(context: grpc.aio.ServicerContext[Any, Any], host: str, what: str) -> None:
    """A compute acts for its own host only (plaintext internal mode has no identities)."""
    identity = peer_identity(context)
    if identity is not None and identity.host != host:
        raise deny(context, f"{what}: compute {identity.host} may not act for host {host!r}")


def event_from_proto(message: conductor_pb2.InstanceEvent) -> InstanceEvent:
    kind = _KINDS.get(message.kind)
    if kind is None:
        raise InvalidArgument("events.kind", f"unknown event kind {message.kind}")
    if not message.instance_uuid:
        raise InvalidArgument("events.instance_uuid", "must not be empty")
    try:
        power_state = PowerState(message.power_state)
    except ValueError as exc:
        raise InvalidArgument("events.power_state", str(exc)) from exc
    return InstanceEvent(
        instance_uuid=message.instance_uuid,
        host=message.host,
        kind=kind,
        occurred_at=from_timestamp(message.occurred_at),
        power_state=power_state,
        reason=message.reason,
        request_id=message.request_id,
        power_action=POWER_ACTIONS.get(message.power_action),
        admin_password=message.admin_password,
    )


def underlay_from_proto(address: str) -> str:
    if not address:
        return ""
    try:
        return str(IPv4Address(address))
    except ValueError as exc:
        raise InvalidArgument("underlay_address", f"{address!r} is not an IPv4 address") from exc


def node_from_proto(message: conductor_pb2.ReportComputeNodeRequest) -> ComputeNodeReport:
    if not message.host:
        raise InvalidArgument("host", "must not be empty")
    if not message.rpc_address:
        raise InvalidArgument("rpc_address", "must not be empty")
    if message.vcpus < 0 or message.memory_mb < 0 or message.local_gb < 0:
        raise InvalidArgument("vcpus", "capacities must not be negative")
    return ComputeNodeReport(
        host=message.host,
        hypervisor_hostname=message.hypervisor_hostname or message.host,
        rpc_address=message.rpc_address,
        vcpus=message.vcpus,
        memory_mb=message.memory_mb,
        local_gb=message.local_gb,
        hypervisor_type=message.hypervisor_type,
        cpu_arch=message.cpu_arch,
        availability_zone=message.availability_zone or "nova",
        cpu_allocation_ratio=message.cpu_allocation_ratio or 16.0,
        ram_allocation_ratio=message.ram_allocation_ratio or 1.5,
        disk_allocation_ratio=message.disk_allocation_ratio or 1.0,
        underlay_address=underlay_from_proto(message.underlay_address),
    )


class ConductorServicer(conductor_pb2_grpc.ConductorServicer):  # type: ignore[misc]
    def __init__(
        self,
        builds: BuildTask,
        events: InstanceEvents,
        nodes: ComputeNodes,
        *,
        deletes: DeleteInstances,
        power: PowerActions,
        port_rules: PortRulesFanOut,
        scope: HostScope,
        streams: BuildStreams | None = None,
    ) -> None:
        self._port_rules = port_rules
        self._scope = scope
        self._streams = streams if streams is not None else BuildStreams(max_age=None)
        self._builds = builds
        self._events = events
        self._nodes = nodes
        self._deletes = deletes
        self._power = power

    async def BuildInstances(
        self,
        request_iterator: AsyncIterator[conductor_pb2.BuildInstancesRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> conductor_pb2.BuildInstancesSummary:
        if self._streams.draining:
            # the api counts nothing as read and opens its next stream elsewhere
            await context.abort(grpc.StatusCode.UNAVAILABLE, "this conductor is shutting down")
        messages = instances = 0
        peer = context.peer()
        log.info("build stream opened by %s", peer)
        reader = aiter(request_iterator)
        ended = "closed"
        with self._streams.opened() as stream:
            while True:
                try:
                    message = await stream.next(reader)
                except StopAsyncIteration:
                    break
                except StreamEnded:
                    ended = "ended here"
                    break
                messages += 1
                instances += len(message.instance_uuids)
                self._builds.submit(
                    message.instance_uuids, message.request_id, message.admin_password
                )
        log.info("build stream from %s %s after %d messages", peer, ended, messages)
        return conductor_pb2.BuildInstancesSummary(messages=messages, instances=instances)

    async def ReportInstanceEvents(
        self,
        request: conductor_pb2.ReportInstanceEventsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> conductor_pb2.ReportInstanceEventsResponse:
        events = [event_from_proto(e) for e in request.events]
        await self._check_events(context, events)
        applied = await self._events.apply(events)
        return conductor_pb2.ReportInstanceEventsResponse(applied=applied)

    async def _check_events(
        self, context: grpc.aio.ServicerContext[Any, Any], events: list[InstanceEvent]
    ) -> None:
        identity = peer_identity(context)
        if identity is None:
            return
        for event in events:
            _check_host(context, event.host, "ReportInstanceEvents")
        foreign = await self._scope.foreign_instances(
            identity.host, [e.instance_uuid for e in events]
        )
        if foreign:
            raise deny(
                context,
                f"ReportInstanceEvents: instances {', '.join(foreign[:5])} were never placed on "
                f"compute {identity.host}",
            )

    async def ReportComputeNode(
        self,
        request: conductor_pb2.ReportComputeNodeRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> conductor_pb2.ComputeNodeAck:
        node = node_from_proto(request)
        _check_host(context, node.host, "ReportComputeNode")
        node_id = await self._nodes.report(node)
        return conductor_pb2.ComputeNodeAck(compute_node_id=node_id)

    async def ListHostInstances(
        self,
        request: conductor_pb2.ListHostInstancesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> conductor_pb2.ListHostInstancesResponse:
        if not request.host:
            raise InvalidArgument("host", "must not be empty")
        _check_host(context, request.host, "ListHostInstances")
        found = await self._nodes.host_instances(request.host)
        return host_instances_to_proto(found)

    async def DeleteInstances(
        self,
        request: conductor_pb2.DeleteInstancesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> conductor_pb2.DeleteInstancesResponse:
        if any(not uuid for uuid in request.instance_uuids):
            raise InvalidArgument("instance_uuids", "must not contain empty ids")
        accepted = await self._deletes(list(request.instance_uuids), request.request_id)
        return conductor_pb2.DeleteInstancesResponse(accepted=accepted)

    async def PowerAction(
        self,
        request: conductor_pb2.PowerActionRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> conductor_pb2.PowerActionResponse:
        action = POWER_ACTIONS.get(request.action)
        if action is None:
            raise InvalidArgument("action", f"unknown power action {request.action}")
        if not request.instance_uuid:
            raise InvalidArgument("instance_uuid", "must not be empty")
        await self._power(request.instance_uuid, action, request.request_id)
        return conductor_pb2.PowerActionResponse()

    async def RefreshPortRules(
        self,
        request: conductor_pb2.RefreshPortRulesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> conductor_pb2.RefreshPortRulesResponse:
        self._port_rules.groups_changed(list(request.group_ids), list(request.instance_uuids))
        return conductor_pb2.RefreshPortRulesResponse()
