"""HostInstance <-> ListHostInstancesResponse: a host's inventory, what its datapath
converges to at start-up. The address sets the ports' rules name travel once for the whole
answer (a group of N members on a host with N of them: O(N) bytes, not O(N^2), which took
this answer past gRPC's 4 MiB limit when each rule carried its members)."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.domain import HostInstance, PowerState, Resources, TaskState, VmState
from services.common.generated.novagrpc.internal.v1 import conductor_pb2
from services.common.networking import sets_for
from services.common.rpc.ports import (
    address_sets_from_proto,
    address_sets_to_proto,
    port_from_proto,
    port_to_proto,
)


def host_instances_to_proto(
    found: Sequence[HostInstance],
) -> conductor_pb2.ListHostInstancesResponse:
    return conductor_pb2.ListHostInstancesResponse(
        instances=[
            conductor_pb2.HostInstance(
                instance_uuid=i.uuid,
                vm_state=i.vm_state.value,
                task_state=i.task_state.value if i.task_state else "",
                power_state=int(i.power_state),
                vcpus=i.resources.vcpus,
                memory_mb=i.resources.memory_mb,
                root_gb=i.resources.disk_gb,
                ports=[port_to_proto(p) for p in i.ports],
            )
            for i in found
        ],
        address_sets=address_sets_to_proto(s for i in found for s in i.address_sets),
    )


def host_instances_from_proto(
    reply: conductor_pb2.ListHostInstancesResponse,
) -> list[HostInstance]:
    """Each instance gets the sets its ports name, one object per group for all of them."""
    known = address_sets_from_proto(reply.address_sets)
    found: list[HostInstance] = []
    for i in reply.instances:
        ports = tuple(port_from_proto(p, instance_uuid=i.instance_uuid) for p in i.ports)
        found.append(
            HostInstance(
                uuid=i.instance_uuid,
                vm_state=VmState(i.vm_state),
                task_state=TaskState(i.task_state) if i.task_state else None,
                power_state=PowerState(i.power_state),
                resources=Resources(i.vcpus, i.memory_mb, i.root_gb),
                ports=ports,
                address_sets=sets_for(ports, known),
            )
        )
    return found
