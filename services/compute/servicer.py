"""The internal Compute service: protobuf stops here."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import grpc

from services.common.builds import BuildImage, BuildSpec
from services.common.domain import Flavor, PowerAction
from services.common.errors import InvalidArgument, Unavailable
from services.common.generated.novagrpc.internal.v1 import (
    compute_console_pb2,
    compute_pb2,
    compute_pb2_grpc,
)
from services.common.identity import ServiceRole
from services.common.networking import AddressSet, sets_for
from services.common.rpc.convert import from_timestamp
from services.common.rpc.peers import CallerPolicy
from services.common.rpc.ports import address_sets_from_proto, port_from_proto
from services.common.rpc.power_actions import POWER_ACTIONS
from services.compute.manager import ComputeManager
from services.compute.net.driver import DatapathError
from services.compute.virt.driver import HypervisorError

_SERVICE = compute_pb2.DESCRIPTOR.services_by_name["Compute"].full_name
_CONDUCTOR = frozenset({ServiceRole.CONDUCTOR})
_CONSOLE_SERVICE = compute_console_pb2.DESCRIPTOR.services_by_name["ComputeConsole"].full_name

# Who may call what (checked from the caller's certificate when internal TLS is on): builds,
# deletes and power actions come from the conductor only; the status is also the api's (and
# its operators') read-only view.
CALLERS: CallerPolicy = {
    f"/{_SERVICE}/BuildAndRunInstance": _CONDUCTOR,
    f"/{_SERVICE}/TerminateInstance": _CONDUCTOR,
    f"/{_SERVICE}/PowerAction": _CONDUCTOR,
    f"/{_SERVICE}/GetComputeStatus": frozenset({ServiceRole.CONDUCTOR, ServiceRole.API}),
    f"/{_SERVICE}/UpdatePortRules": _CONDUCTOR,
    # the serial console is the api's to relay to its users (the project is checked there)
    **{
        f"/{_CONSOLE_SERVICE}/{method}": frozenset({ServiceRole.API})
        for method in ("GetConsoleOutput", "FollowConsoleOutput", "AttachConsole")
    },
    f"/{_CONSOLE_SERVICE}/GetConsoleStatus": frozenset({ServiceRole.CONDUCTOR, ServiceRole.API}),
}


def builds_from_proto(request: compute_pb2.BuildAndRunInstanceRequest) -> list[BuildSpec]:
    known = address_sets_from_proto(request.address_sets)
    return [build_from_proto(b, known) for b in request.builds]


def build_from_proto(
    message: compute_pb2.InstanceBuild, address_sets: Mapping[str, AddressSet] | None = None
) -> BuildSpec:
    """``address_sets``: the request's, by group id (each build takes those its rules name)."""
    if not message.instance_uuid:
        raise InvalidArgument("builds.instance_uuid", "must not be empty")
    flavor, image = message.flavor, message.image
    if flavor.vcpus < 1 or flavor.memory_mb < 1:
        raise InvalidArgument("builds.flavor", "vcpus and memory_mb must be positive")
    if any(gb < 1 for gb in message.ephemeral_disks_gb):
        raise InvalidArgument("builds.ephemeral_disks_gb", "sizes must be positive")
    ports = tuple(port_from_proto(p, instance_uuid=message.instance_uuid) for p in message.ports)
    return BuildSpec(
        uuid=message.instance_uuid,
        instance_id=message.instance_id,
        display_name=message.display_name,
        project_id=message.project_id,
        flavor=Flavor(flavor.id, flavor.name, flavor.vcpus, flavor.memory_mb, flavor.root_gb),
        image=BuildImage(
            id=image.id,
            name=image.name,
            disk_format=image.disk_format,
            location=image.location,
            checksum=image.checksum,
            size_bytes=image.size_bytes,
            properties=dict(image.properties),
        ),
        created_at=from_timestamp(message.created_at),
        request_id=message.request_id,
        metadata=dict(message.metadata),
        networks=tuple(message.networks),
        ports=ports,
        address_sets=sets_for(ports, address_sets or {}),
        ephemeral_gb=tuple(message.ephemeral_disks_gb),
        config_drive=message.config_drive,
        availability_zone=message.availability_zone,
        key_name=message.key_name,
        key_data=message.key_data,
        user_data=message.user_data,
        admin_password=message.admin_password,
    )


class ComputeServicer(compute_pb2_grpc.ComputeServicer):  # type: ignore[misc]
    def __init__(self, manager: ComputeManager) -> None:
        self._manager = manager

    async def BuildAndRunInstance(
        self,
        request: compute_pb2.BuildAndRunInstanceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> compute_pb2.BuildAndRunInstanceResponse:
        builds = builds_from_proto(request)
        try:
            queued, duplicates = self._manager.accept(builds)
        except HypervisorError as exc:
            raise Unavailable(str(exc)) from exc
        return compute_pb2.BuildAndRunInstanceResponse(queued=queued, duplicates=duplicates)

    async def TerminateInstance(
        self,
        request: compute_pb2.TerminateInstanceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> compute_pb2.TerminateInstanceResponse:
        if any(not uuid for uuid in request.instance_uuids):
            raise InvalidArgument("instance_uuids", "must not contain empty ids")
        queued = self._manager.terminate(list(request.instance_uuids), request.request_id)
        return compute_pb2.TerminateInstanceResponse(queued=queued)

    async def GetComputeStatus(
        self,
        request: compute_pb2.GetComputeStatusRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> compute_pb2.ComputeStatus:
        status = self._manager.status
        domains = await self._manager.run_blocking(self._manager.driver.list_domains)
        return compute_pb2.ComputeStatus(
            domain_uuids=sorted(d.uuid for d in domains if d.reapable_by(self._manager.host)),
            host=self._manager.host,
            queued=status.queued,
            building=status.building,
            max_concurrent_builds=status.max_concurrent_builds,
            instances=status.instances,
            claimed_vcpus=status.claimed.vcpus,
            claimed_memory_mb=status.claimed.memory_mb,
            claimed_disk_gb=status.claimed.disk_gb,
            builds_succeeded=status.succeeded,
            builds_failed=status.failed,
        )

    async def PowerAction(
        self,
        request: compute_pb2.ComputePowerActionRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> compute_pb2.ComputePowerActionResponse:
        if not request.instance_uuid:
            raise InvalidArgument("instance_uuid", "must not be empty")
        action = power_action_of(request)
        try:
            self._manager.power_action(request.instance_uuid, action, request.request_id)
        except HypervisorError as exc:
            raise Unavailable(str(exc)) from exc
        return compute_pb2.ComputePowerActionResponse()

    async def UpdatePortRules(
        self,
        request: compute_pb2.UpdatePortRulesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> compute_pb2.UpdatePortRulesResponse:
        ports = [port_from_proto(p) for p in request.ports]
        sets = list(address_sets_from_proto(request.address_sets).values())
        network = self._manager.network
        # No port: a server came or went, only set members change (no chain is rendered).
        change = (
            partial(network.update_rules, ports, sets)
            if ports
            else partial(network.update_address_sets, sets)
        )
        try:
            updated = await self._manager.run_blocking(change)
        except DatapathError as exc:
            raise Unavailable(f"the datapath could not apply the rules: {exc}") from exc
        return compute_pb2.UpdatePortRulesResponse(updated=updated)


def power_action_of(request: compute_pb2.ComputePowerActionRequest) -> PowerAction:
    """kind, or the string of a conductor older than kind (read only when kind is unset)."""
    if request.kind:
        found = POWER_ACTIONS.get(request.kind)
        if found is None:
            raise InvalidArgument("kind", f"unknown power action kind {request.kind}")
        return found
    try:
        return PowerAction(request.action)
    except ValueError as exc:
        raise InvalidArgument("action", f"unknown power action {request.action!r}") from exc
