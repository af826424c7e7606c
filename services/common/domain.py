"""Domain types shared by the services: plain dataclasses and enums, no I/O, no transport.

The state model is Nova's: ``vm_state`` says what the instance is, ``task_state`` what is being
done to it, ``power_state`` what the hypervisor last reported. The status a user sees is derived
from the first two and never stored.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.common.networking import AddressSet, PortSpec
from services.common.request_spec import StoredSpec


def utcnow() -> datetime:
    return datetime.now(UTC)


# The hypervisor type libvirt's test:/// driver reports: no guest, and the no-op datapath
# (so no overlay peer, no rules or address sets to push).
TEST_HYPERVISOR = "TEST"


class VmState(enum.StrEnum):
    BUILDING = "building"
    ACTIVE = "active"
    STOPPED = "stopped"
    ERROR = "error"
    DELETED = "deleted"


class TaskState(enum.StrEnum):
    SCHEDULING = "scheduling"
    BLOCK_DEVICE_MAPPING = "block_device_mapping"
    NETWORKING = "networking"
    SPAWNING = "spawning"
    DELETING = "deleting"
    POWERING_OFF = "powering-off"
    POWERING_ON = "powering-on"
    REBOOTING = "rebooting"
    REBOOTING_HARD = "rebooting_hard"


class PowerState(enum.IntEnum):
    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7


class ServerStatus(enum.StrEnum):
    BUILD = "BUILD"
    ACTIVE = "ACTIVE"
    ERROR = "ERROR"
    DELETED = "DELETED"
    SHUTOFF = "SHUTOFF"


def server_status(vm_state: VmState, task_state: TaskState | None) -> ServerStatus:
    """The status a user sees (Nova's ``common.status_from_state``, reduced to our states)."""
    del task_state  # every task we run keeps the status of its vm_state
    return {
        VmState.BUILDING: ServerStatus.BUILD,
        VmState.ACTIVE: ServerStatus.ACTIVE,
        VmState.STOPPED: ServerStatus.SHUTOFF,
        VmState.ERROR: ServerStatus.ERROR,
        VmState.DELETED: ServerStatus.DELETED,
    }[vm_state]


@dataclass(frozen=True, slots=True)
class Flavor:
    id: str
    name: str
    vcpus: int
    memory_mb: int
    root_gb: int
    is_public: bool = True


class ImageStatus(enum.StrEnum):
    """Glance's image statuses that this service has; stored as these strings."""

    ACTIVE = "active"
    DELETED = "deleted"


class GroupPolicy(enum.StrEnum):
    """A server group's placement policy, spelt as Nova's API and the database store it."""

    AFFINITY = "affinity"
    ANTI_AFFINITY = "anti-affinity"
    SOFT_AFFINITY = "soft-affinity"
    SOFT_ANTI_AFFINITY = "soft-anti-affinity"


# What the image store takes: disk images libvirt attaches, or a kernel booted directly (with
# its initrd and command line as image properties).
DISK_FORMATS = ("qcow2", "raw", "kernel")


@dataclass(frozen=True, slots=True)
class Image:
    id: str
    name: str
    disk_format: str
    container_format: str
    location: str
    checksum: str
    size_bytes: int
    status: ImageStatus = ImageStatus.ACTIVE
    properties: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class Fault:
    code: int
    message: str
    created_at: datetime
    details: str = ""


@dataclass(frozen=True, slots=True)
class Instance:
    uuid: str
    id: int | None
    display_name: str
    project_id: str
    flavor: Flavor
    image_id: str
    reservation_id: str
    vm_state: VmState
    task_state: TaskState | None
    power_state: PowerState
    host: str | None
    node: str | None
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime | None = None
    launched_at: datetime | None = None
    fault: Fault | None = None
    request_id: str = ""
    availability_zone: str | None = None
    # What placing it again needs (services.common.request_spec); parsed once, by the store.
    request_spec: StoredSpec = field(default_factory=StoredSpec)
    description: str | None = None
    key_name: str | None = None
    key_data: str | None = None
    user_data: str | None = None
    security_groups: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    # Extra blank local disks, GiB each (the block device mapping's one shape past the api).
    ephemeral_gb: tuple[int, ...] = ()
    config_drive: bool = False
    tags: tuple[str, ...] = ()
    # Its NICs, in device order (loaded with the instance; empty for networks=["none"]).
    ports: tuple[PortSpec, ...] = ()
    # The address sets its ports' rules name (loaded with the ports; one object per group
    # shared by every instance of a load, so a big group is held once, not per member).
    address_sets: tuple[AddressSet, ...] = ()
    # Set only from inside the guest (its guest-agent channel), through compute's report.
    guest_ready_at: datetime | None = None

    @property
    def status(self) -> ServerStatus:
        return server_status(self.vm_state, self.task_state)

    @property
    def resources(self) -> Resources:
        """What the instance holds on its host: the flavor plus its extra local disks."""
        flavor = self.flavor
        return Resources(flavor.vcpus, flavor.memory_mb, flavor.root_gb + sum(self.ephemeral_gb))


@dataclass(frozen=True, slots=True)
class Resources:
    """What an instance consumes on a host (Placement's VCPU, MEMORY_MB, DISK_GB)."""

    vcpus: int
    memory_mb: int
    disk_gb: int

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.vcpus + other.vcpus,
            self.memory_mb + other.memory_mb,
            self.disk_gb + other.disk_gb,
        )

    @staticmethod
    def of(flavor: Flavor) -> Resources:
        return Resources(flavor.vcpus, flavor.memory_mb, flavor.root_gb)


ZERO = Resources(0, 0, 0)


@dataclass(slots=True)
class HostState:
    """One compute node as the scheduler sees it for one batch: capacity, usage, generation."""

    node_id: int
    host: str
    hypervisor_hostname: str
    rpc_address: str
    total: Resources
    used: Resources
    cpu_allocation_ratio: float
    ram_allocation_ratio: float
    disk_allocation_ratio: float
    generation: int
    enabled: bool = True
    is_up: bool = True
    availability_zone: str = "nova"
    instance_count: int = 0
    failed_builds: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def free(self) -> Resources:
        return Resources(
            int(self.total.vcpus * self.cpu_allocation_ratio) - self.used.vcpus,
            int(self.total.memory_mb * self.ram_allocation_ratio) - self.used.memory_mb,
            int(self.total.disk_gb * self.disk_allocation_ratio) - self.used.disk_gb,
        )

    def fits(self, request: Resources) -> bool:
        free = self.free
        return (
            request.vcpus <= free.vcpus
            and request.memory_mb <= free.memory_mb
            and request.disk_gb <= free.disk_gb
        )

    def consume(self, request: Resources) -> None:
        self.used = self.used + request
        self.instance_count += 1

    def release(self, request: Resources) -> None:
        self.used = Resources(
            self.used.vcpus - request.vcpus,
            self.used.memory_mb - request.memory_mb,
            self.used.disk_gb - request.disk_gb,
        )
        self.instance_count -= 1


@dataclass(frozen=True, slots=True)
class ComputeNodeReport:
    host: str
    hypervisor_hostname: str
    rpc_address: str
    vcpus: int
    memory_mb: int
    local_gb: int
    hypervisor_type: str
    cpu_arch: str
    availability_zone: str
    cpu_allocation_ratio: float = 16.0
    ram_allocation_ratio: float = 1.5
    disk_allocation_ratio: float = 1.0
    # The host's VXLAN endpoint (empty: the host takes part in no overlay).
    underlay_address: str = ""


class InstanceEventKind(enum.StrEnum):
    SPAWNING = "spawning"
    ACTIVE = "active"
    RESCHEDULE = "reschedule"
    FAILED = "failed"
    POWER_STATE = "power_state"
    DELETED = "deleted"
    LOST = "lost"
    STOPPED = "stopped"
    STARTED = "started"
    REBOOTED = "rebooted"
    ACTION_FAILED = "action_failed"
    GUEST_READY = "guest_ready"


class PowerAction(enum.StrEnum):
    START = "start"
    STOP = "stop"
    REBOOT_SOFT = "reboot_soft"
    REBOOT_HARD = "reboot_hard"


@dataclass(frozen=True, slots=True)
class InstanceEvent:
    """A state change compute reports for one instance."""

    instance_uuid: str
    host: str
    kind: InstanceEventKind
    occurred_at: datetime
    power_state: PowerState = PowerState.NOSTATE
    reason: str = ""
    request_id: str = ""
    # ACTION_FAILED: which power action failed (None from a compute too old to say).
    power_action: PowerAction | None = None
    # RESCHEDULE: the build's admin password, handed back for the next host (never stored).
    admin_password: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class HostInstance:
    """What the database says one host should have (compute's start-up and sync view)."""

    uuid: str
    vm_state: VmState
    task_state: TaskState | None
    power_state: PowerState
    resources: Resources
    # With their security rules: what the host's datapath converges to.
    ports: tuple[PortSpec, ...] = ()
    # The address sets those rules name.
    address_sets: tuple[AddressSet, ...] = ()
