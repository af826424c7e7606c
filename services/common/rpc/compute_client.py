"""Typed client of the compute services (the conductor's side)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.common.builds import BuildRequest, hostname_for
from services.common.context import request_metadata
from services.common.domain import PowerAction
from services.common.generated.novagrpc.internal.v1 import compute_pb2, compute_pb2_grpc
from services.common.networking import PortSpec
from services.common.rpc.channels import ChannelPool
from services.common.rpc.convert import to_timestamp
from services.common.rpc.ports import port_to_proto
from services.common.rpc.power_actions import POWER_ACTION_KINDS
from services.common.rpc.retry import with_retries


def build_to_proto(build: BuildRequest) -> compute_pb2.InstanceBuild:
    instance, image, flavor = build.instance, build.image, build.instance.flavor
    return compute_pb2.InstanceBuild(
        instance_uuid=instance.uuid,
        instance_id=instance.id or 0,
        display_name=instance.display_name,
        project_id=instance.project_id,
        flavor=compute_pb2.FlavorSpec(
            id=flavor.id,
            name=flavor.name,
            vcpus=flavor.vcpus,
            memory_mb=flavor.memory_mb,
            root_gb=flavor.root_gb,
        ),
        image=compute_pb2.ImageSpec(
            id=image.id,
            name=image.name,
            disk_format=image.disk_format,
            location=image.location,
            checksum=image.checksum,
            properties=dict(image.properties),
            size_bytes=image.size_bytes,
        ),
        metadata=instance.metadata,
        created_at=to_timestamp(instance.created_at),
        attempt=build.attempt,
        request_id=build.request_id,
        networks=list(build.networks),
        config_drive=instance.config_drive,
        hostname=hostname_for(instance.display_name, instance.uuid),
        availability_zone=instance.availability_zone or "",
        key_name=instance.key_name or "",
        key_data=instance.key_data or "",
        user_data=instance.user_data or "",
        admin_password=build.admin_password,
        ephemeral_disks_gb=[int(d["size_gb"]) for d in instance.block_devices],
        ports=[port_to_proto(p) for p in instance.ports],
    )


@dataclass(frozen=True, slots=True)
class BuildAck:
    queued: int
    duplicates: list[str]


class ComputeClient:
    def __init__(self, channels: ChannelPool, *, timeout: float) -> None:
        self._channels = channels
        self._timeout = timeout

    async def build_and_run(
        self, address: str, builds: Sequence[BuildRequest], *, request_id: str = ""
    ) -> BuildAck:
        """Idempotent on the compute side (by instance uuid), so retrying is safe."""
        stub = compute_pb2_grpc.ComputeStub(self._channels.get(address))
        request = compute_pb2.BuildAndRunInstanceRequest(builds=[build_to_proto(b) for b in builds])
        metadata = request_metadata(request_id)

        async def call() -> BuildAck:
            reply = await stub.BuildAndRunInstance(
                request, timeout=self._timeout, metadata=metadata
            )
            return BuildAck(reply.queued, list(reply.duplicates))

        return await with_retries(call, attempts=4)

    async def terminate(self, address: str, uuids: Sequence[str], *, request_id: str = "") -> int:
        """Idempotent: an instance the host no longer has is reported DELETED at once."""
        stub = compute_pb2_grpc.ComputeStub(self._channels.get(address))
        request = compute_pb2.TerminateInstanceRequest(
            instance_uuids=list(uuids), request_id=request_id
        )

        async def call() -> int:
            reply = await stub.TerminateInstance(request, timeout=self._timeout)
            return int(reply.queued)

        return await with_retries(call, attempts=3)

    async def update_port_rules(self, address: str, ports: Sequence[PortSpec]) -> int:
        """Replaces the rules of these ports on the host; idempotent, so retried."""
        stub = compute_pb2_grpc.ComputeStub(self._channels.get(address))
        request = compute_pb2.UpdatePortRulesRequest(ports=[port_to_proto(p) for p in ports])

        async def call() -> int:
            reply = await stub.UpdatePortRules(request, timeout=self._timeout)
            return int(reply.updated)

        return await with_retries(call, attempts=3)

    async def power_action(
        self, address: str, uuid: str, action: PowerAction, *, request_id: str = ""
    ) -> None:
        stub = compute_pb2_grpc.ComputeStub(self._channels.get(address))
        # The string too, for compute services older than kind (a rolling upgrade).
        request = compute_pb2.ComputePowerActionRequest(
            instance_uuid=uuid, action=action.value, kind=POWER_ACTION_KINDS[action],
            request_id=request_id,
        )  # fmt: skip
        await stub.PowerAction(request, timeout=self._timeout)
