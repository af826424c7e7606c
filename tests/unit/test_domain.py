from __future__ import annotations

from services.common.domain import (
    HostState,
    Resources,
    ServerStatus,
    TaskState,
    VmState,
    server_status,
)


def host(vcpus: int = 4, memory_mb: int = 4096, disk_gb: int = 40, **kw: object) -> HostState:
    return HostState(
        node_id=1,
        host="h1",
        hypervisor_hostname="h1",
        rpc_address="h1:1",
        total=Resources(vcpus, memory_mb, disk_gb),
        used=Resources(0, 0, 0),
        cpu_allocation_ratio=float(kw.get("cpu", 1.0)),  # type: ignore[arg-type]
        ram_allocation_ratio=float(kw.get("ram", 1.0)),  # type: ignore[arg-type]
        disk_allocation_ratio=1.0,
        generation=0,
    )


def test_status_is_derived_from_vm_state() -> None:
    assert server_status(VmState.BUILDING, TaskState.SCHEDULING) is ServerStatus.BUILD
    assert server_status(VmState.BUILDING, TaskState.SPAWNING) is ServerStatus.BUILD
    assert server_status(VmState.ACTIVE, None) is ServerStatus.ACTIVE
    assert server_status(VmState.ERROR, None) is ServerStatus.ERROR
    assert server_status(VmState.STOPPED, None) is ServerStatus.SHUTOFF


def test_fits_applies_allocation_ratios_and_consumption() -> None:
    h = host(vcpus=2, memory_mb=1024, cpu=2.0, ram=1.5)
    request = Resources(1, 512, 1)
    fitted = 0
    while h.fits(request):
        h.consume(request)
        fitted += 1
    assert fitted == 3  # RAM bound: 1024 * 1.5 / 512; vCPU would allow 4
    assert h.instance_count == 3
    assert h.free == Resources(1, 0, 37)
