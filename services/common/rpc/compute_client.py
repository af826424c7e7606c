"""Typed client of the compute services (the conductor's side). Every call's gRPC error
leaves it as a PeerFailed (HostUnreachable, PeerRefused): callers see no status codes."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.builds import BuildAck as BuildAck  # noqa: PLC0414
from services.common.builds import BuildSpec
from services.common.context import request_metadata
from services.common.domain import PowerAction
from services.common.generated.novagrpc.internal.v1 import compute_pb2, compute_pb2_grpc
from services.common.networking import AddressSet, PortSpec
from services.common.rpc.channels import ChannelPool
from services.common.rpc.client_errors import wrap_errors
from services.common.rpc.convert import to_timestamp
from services.common.rpc.ports import address_sets_to_proto, port_to_proto
from services.common.rpc.power_actions import POWER_ACTION_KINDS
from services.common.rpc.retry import with_retries


def build_to_proto(build: BuildSpec) -> compute_pb2.InstanceBuild:
    flavor, image = build.flavor, build.image
    return compute_pb2.InstanceBuild(
        instance_uuid=build.uuid,
        instance_id=build.instance_id,
        display_name=build.display_name,
        project_id=build.project_id,
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
        metadata=dict(build.metadata),
        created_at=to_timestamp(build.created_at),
        request_id=build.request_id,
        networks=list(build.networks),
        config_drive=build.config_drive,
        availability_zone=build.availability_zone,
        key_name=build.key_name,
        key_data=build.key_data,
        user_data=build.user_data,
        admin_password=build.admin_password,
        ephemeral_disks_gb=list(build.ephemeral_gb),
        ports=[port_to_proto(p) for p in build.ports],
    )


def build_request(builds: Sequence[BuildSpec]) -> compute_pb2.BuildAndRunInstanceRequest:
    """One batch for one host; each address set its builds' rules name is sent once."""
    return compute_pb2.BuildAndRunInstanceRequest(
        builds=[build_to_proto(b) for b in builds],
        address_sets=address_sets_to_proto(s for b in builds for s in b.address_sets),
    )


class ComputeClient:
    def __init__(self, channels: ChannelPool, *, timeout: float) -> None:
        self._channels = channels
        self._timeout = timeout

    async def build_and_run(
        self, address: str, builds: Sequence[BuildSpec], *, request_id: str = ""
    ) -> BuildAck:
        """Idempotent on the compute side (by instance uuid), so retrying is safe."""
        stub = compute_pb2_grpc.ComputeStub(self._channels.get(address))
        request = build_request(builds)
        metadata = request_metadata(request_id)

        async def call() -> BuildAck:
            reply = await stub.BuildAndRunInstance(
                request, timeout=self._timeout, metadata=metadata
            )
            return BuildAck(reply.queued, list(reply.duplicates))

        with wrap_errors(f"compute host at {address}"):
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

        with wrap_errors(f"compute host at {address}"):
            return await with_retries(call, attempts=3)

    async def update_port_rules(
        self, address: str, ports: Sequence[PortSpec], *, address_sets: Sequence[AddressSet] = ()
    ) -> int:
        """Replaces the rules of these ports and the members of these address sets on the
        host (no port: the sets alone); idempotent, so retried."""
        stub = compute_pb2_grpc.ComputeStub(self._channels.get(address))
        request = compute_pb2.UpdatePortRulesRequest(
            ports=[port_to_proto(p) for p in ports],
            address_sets=address_sets_to_proto(address_sets),
        )

        async def call() -> int:
            reply = await stub.UpdatePortRules(request, timeout=self._timeout)
            return int(reply.updated)

        with wrap_errors(f"compute host at {address}"):
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
        with wrap_errors(f"compute host at {address}"):
            await stub.PowerAction(request, timeout=self._timeout)
