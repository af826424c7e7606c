"""SQLAlchemy 2 models: the schema of record. Alembic migrations create it; a test checks
that the migrations and these models never drift apart."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite has no time zones, PostgreSQL does; the
    domain only ever sees aware UTC datetimes either way."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime()}


class FlavorRow(Base):
    __tablename__ = "flavors"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    root_gb: Mapped[int] = mapped_column(Integer)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class ImageRow(Base):
    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    disk_format: Mapped[str] = mapped_column(String(32))
    container_format: Mapped[str] = mapped_column(String(32))
    location: Mapped[str] = mapped_column(Text, default="")
    checksum: Mapped[str] = mapped_column(String(128), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(32), default="active")
    properties: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime]
    owner: Mapped[str | None] = mapped_column(String(255))


class ComputeNodeRow(Base):
    __tablename__ = "compute_nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(255), unique=True)
    hypervisor_hostname: Mapped[str] = mapped_column(String(255))
    rpc_address: Mapped[str] = mapped_column(String(255))
    hypervisor_type: Mapped[str] = mapped_column(String(32))
    cpu_arch: Mapped[str] = mapped_column(String(32))
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(BigInteger)
    local_gb: Mapped[int] = mapped_column(BigInteger)
    cpu_allocation_ratio: Mapped[float] = mapped_column(Float)
    ram_allocation_ratio: Mapped[float] = mapped_column(Float)
    disk_allocation_ratio: Mapped[float] = mapped_column(Float)
    availability_zone: Mapped[str] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    # Bumped by every claim: ``UPDATE ... WHERE generation = :seen`` detects a lost race.
    generation: Mapped[int] = mapped_column(Integer, default=0)
    # Builds that failed here since the last success (the BuildFailureWeigher's input).
    failed_builds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What the node's allocations add up to, kept by every claim and free (placement.py) so
    # that a scheduling pass reads hosts without summing every allocation.
    used_vcpus: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    used_memory_mb: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    used_disk_gb: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    used_instances: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    last_heartbeat_at: Mapped[datetime]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime | None]
    # Where the other hosts send this host's VXLAN traffic (its registration says).
    underlay_address: Mapped[str | None] = mapped_column(String(39))


class InstanceRow(Base):
    __tablename__ = "instances"
    __table_args__ = (
        Index("ix_instances_project_id_created_at", "project_id", "created_at"),
        Index("ix_instances_vm_state_task_state", "vm_state", "task_state"),
        # WatchServers follows changes by this column.
        Index("ix_instances_updated_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    display_name: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(255))
    # The flavor is copied onto the instance (as Nova embeds it): later flavor edits must not
    # change what an existing instance consumes.
    flavor_id: Mapped[str] = mapped_column(String(36))
    flavor_name: Mapped[str] = mapped_column(String(255))
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    root_gb: Mapped[int] = mapped_column(Integer)
    image_id: Mapped[str] = mapped_column(String(36))
    reservation_id: Mapped[str] = mapped_column(String(64), index=True)
    vm_state: Mapped[str] = mapped_column(String(32))
    task_state: Mapped[str | None] = mapped_column(String(32))
    power_state: Mapped[int] = mapped_column(Integer, default=0)
    host: Mapped[str | None] = mapped_column(String(255), index=True)
    node: Mapped[str | None] = mapped_column(String(255))
    server_metadata: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    request_id: Mapped[str] = mapped_column(String(64), default="")
    availability_zone: Mapped[str | None] = mapped_column(String(255))
    # What the scheduler needs to place (and re-place) the instance: hints, image properties,
    # zone, forced host, min_count, the alternates chosen and the hosts already tried.
    request_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(255))
    key_name: Mapped[str | None] = mapped_column(String(255))
    # The keypair's public key as it was at create time (as Nova keeps it).
    key_data: Mapped[str | None] = mapped_column(Text)
    # Base64, as the user sent it; the guest reads it from its config drive.
    user_data: Mapped[str | None] = mapped_column(Text)
    security_groups: Mapped[list[str] | None] = mapped_column(JSON)
    networks: Mapped[list[str] | None] = mapped_column(JSON)
    block_devices: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    config_drive: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime | None]
    launched_at: Mapped[datetime | None]
    terminated_at: Mapped[datetime | None]
    # When the guest said it is up (from inside: its guest-agent channel); None until then.
    guest_ready_at: Mapped[datetime | None]


class AllocationRow(Base):
    """What one instance holds on one compute node. At most one per instance."""

    __tablename__ = "allocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    compute_node_id: Mapped[int] = mapped_column(
        ForeignKey("compute_nodes.id", ondelete="CASCADE"), index=True
    )
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]


class InstanceFaultRow(Base):
    __tablename__ = "instance_faults"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), index=True)
    code: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(String(255))
    details: Mapped[str] = mapped_column(Text, default="")
    host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]


def _table(row: type[Base]) -> Table:
    return cast(Table, row.__table__)


# Core tables for the bulk statements the repositories issue.
FLAVORS = _table(FlavorRow)
IMAGES = _table(ImageRow)
NODES = _table(ComputeNodeRow)
INSTANCES = _table(InstanceRow)
ALLOCATIONS = _table(AllocationRow)
FAULTS = _table(InstanceFaultRow)


class ApiTokenRow(Base):
    """A bearer token; only its SHA-256 is stored (tokens are 256-bit random, so a fast hash
    is enough: there is nothing to brute-force)."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    project_id: Mapped[str] = mapped_column(String(255))
    roles: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class ServerGroupRow(Base):
    __tablename__ = "server_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    policy: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]


class ServerGroupMemberRow(Base):
    __tablename__ = "server_group_members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_uuid: Mapped[str] = mapped_column(String(36), index=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    created_at: Mapped[datetime]


class InstanceActionRow(Base):
    """One user-visible operation on an instance (create, delete, ...), as Nova's."""

    __tablename__ = "instance_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), index=True)
    action: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(String(255))
    start_time: Mapped[datetime]
    finish_time: Mapped[datetime | None]
    message: Mapped[str | None] = mapped_column(String(255))


class InstanceActionEventRow(Base):
    """A step of an action (conductor_schedule, compute_build_and_run) and its result."""

    __tablename__ = "instance_action_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[int] = mapped_column(
        ForeignKey("instance_actions.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(255))
    start_time: Mapped[datetime]
    finish_time: Mapped[datetime | None]
    result: Mapped[str | None] = mapped_column(String(16))
    details: Mapped[str] = mapped_column(Text, default="")


class InstanceTagRow(Base):
    __tablename__ = "instance_tags"

    instance_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    tag: Mapped[str] = mapped_column(String(60), primary_key=True, index=True)


class KeypairRow(Base):
    __tablename__ = "keypairs"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]


class QuotaRow(Base):
    """A project's limit for one resource; projects without a row get the defaults."""

    __tablename__ = "quotas"

    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(String(32), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(BigInteger)


class CreateRequestRow(Base):
    """A create with a client_request_id: a retry within 24 h gets these servers back."""

    __tablename__ = "create_requests"
    __table_args__ = (UniqueConstraint("project_id", "client_request_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(String(255))
    client_request_id: Mapped[str] = mapped_column(String(255))
    reservation_id: Mapped[str] = mapped_column(String(64))
    server_ids: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime]


class NetworkRow(Base):
    """A project network with its one IPv4 subnet (Neutron's network + subnet, folded: every
    network here has exactly one)."""

    __tablename__ = "networks"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    cidr: Mapped[str] = mapped_column(String(43))
    gateway: Mapped[str | None] = mapped_column(String(39))
    dns_servers: Mapped[list[str]] = mapped_column(JSON, default=list)
    # [[first, last], ...]: the addresses IPAM may hand out.
    allocation_pools: Mapped[list[list[str]]] = mapped_column(JSON, default=list)
    shared: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The project's "get me a network" network (CreateServer networks=["auto"]).
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The VNI: names the bridge on every host and, across hosts, the VXLAN segment.
    segmentation_id: Mapped[int] = mapped_column(Integer, unique=True)
    mtu: Mapped[int] = mapped_column(Integer, default=1500, server_default="1500")
    created_at: Mapped[datetime]
    # Connected to this external network: its servers reach outside through SNAT on their
    # own host, and floating addresses of its pool can be associated with its ports.
    external_network_id: Mapped[str | None] = mapped_column(ForeignKey("external_networks.id"))


class ExternalNetworkRow(Base):
    """An admin-defined network outside the cloud: the same bridge name on every host, its
    subnet, its upstream gateway and the pool floating and host gateway addresses come from."""

    __tablename__ = "external_networks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    cidr: Mapped[str] = mapped_column(String(43))
    gateway: Mapped[str | None] = mapped_column(String(39))
    allocation_pools: Mapped[list[list[str]]] = mapped_column(JSON, default=list)
    bridge: Mapped[str] = mapped_column(String(15))
    created_at: Mapped[datetime]


class ExternalAddressRow(Base):
    """One address of an external network's pool in use: a project's floating address
    (kind "floating", maybe associated with a port) or a host's gateway address for one
    connected network (kind "gateway", its SNAT source). One table, so that the unique
    (external network, address) key covers both."""

    __tablename__ = "external_addresses"
    __table_args__ = (UniqueConstraint("external_network_id", "address"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    external_network_id: Mapped[str] = mapped_column(ForeignKey("external_networks.id"))
    address: Mapped[str] = mapped_column(String(39))
    kind: Mapped[str] = mapped_column(String(16))
    project_id: Mapped[str | None] = mapped_column(String(255), index=True)
    # A deleted port (its server went) leaves its floating address allocated, unassociated.
    port_id: Mapped[str | None] = mapped_column(
        ForeignKey("ports.id", ondelete="SET NULL"), unique=True
    )
    network_id: Mapped[str | None] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"))
    host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]


class PortRow(Base):
    """One NIC of one server: its MAC and fixed address. The unique (network, address) key
    is what keeps any number of concurrent creates from handing out one address twice."""

    __tablename__ = "ports"
    __table_args__ = (UniqueConstraint("network_id", "fixed_ip"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), index=True)
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id"), index=True)
    # NIC order within the server (eth0, eth1, ...).
    device_index: Mapped[int] = mapped_column(Integer, default=0)
    mac: Mapped[str] = mapped_column(String(17), unique=True)
    fixed_ip: Mapped[str] = mapped_column(String(39))
    created_at: Mapped[datetime]


class SecurityGroupRow(Base):
    __tablename__ = "security_groups"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime]


class SecurityGroupRuleRow(Base):
    """One allow rule (Neutron's shape). Protocol "any" and no ports mean every packet."""

    __tablename__ = "security_group_rules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    group_id: Mapped[str] = mapped_column(
        ForeignKey("security_groups.id", ondelete="CASCADE"), index=True
    )
    direction: Mapped[str] = mapped_column(String(16))
    protocol: Mapped[str] = mapped_column(String(16))
    port_min: Mapped[int | None] = mapped_column(Integer)
    port_max: Mapped[int | None] = mapped_column(Integer)
    remote_cidr: Mapped[str | None] = mapped_column(String(43))
    remote_group_id: Mapped[str | None] = mapped_column(String(36), index=True)
    created_at: Mapped[datetime]


class InstanceSecurityGroupRow(Base):
    """Which groups apply to a server (to every port of it, as Nova's security_groups)."""

    __tablename__ = "instance_security_groups"

    instance_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)


API_TOKENS = _table(ApiTokenRow)
INSTANCE_TAGS = _table(InstanceTagRow)
KEYPAIRS = _table(KeypairRow)
QUOTAS = _table(QuotaRow)
CREATE_REQUESTS = _table(CreateRequestRow)
SERVER_GROUPS = _table(ServerGroupRow)
GROUP_MEMBERS = _table(ServerGroupMemberRow)
ACTIONS = _table(InstanceActionRow)
ACTION_EVENTS = _table(InstanceActionEventRow)
NETWORKS = _table(NetworkRow)
PORTS = _table(PortRow)
EXTERNAL_NETWORKS = _table(ExternalNetworkRow)
EXTERNAL_ADDRESSES = _table(ExternalAddressRow)
SECURITY_GROUPS = _table(SecurityGroupRow)
SECURITY_GROUP_RULES = _table(SecurityGroupRuleRow)
INSTANCE_SECURITY_GROUPS = _table(InstanceSecurityGroupRow)


# ---------------------------------------------------------------------------------------------
# Shadow tables (as Nova's): where ``nova-grpc-manage db archive-deleted`` moves deleted
# servers and what hangs off them, so the live tables stay small; ``db purge`` empties them.
# Each mirrors its table's columns (derived here, so a column added to a live table shows up
# as migration drift until the shadow gets it too) without defaults, foreign keys or unique
# constraints: rows arrive with their ids and are never written otherwise. The indexes are
# the columns purge and the archive join on.

SHADOW_INDEXES: dict[str, tuple[str, ...]] = {
    "instances": ("uuid", "terminated_at"),
    "instance_actions": ("instance_uuid",),
    "instance_action_events": ("action_id",),
    "instance_faults": ("instance_uuid",),
    "instance_tags": ("instance_uuid",),
    "allocations": ("instance_uuid",),
    "server_group_members": ("instance_uuid",),
}


def _shadow(live: Table) -> Table:
    name = f"shadow_{live.name}"
    columns = [
        Column(c.name, c.type, nullable=c.nullable, primary_key=c.primary_key, autoincrement=False)
        for c in live.columns
    ]
    indexes = [Index(f"ix_{name}_{column}", column) for column in SHADOW_INDEXES[live.name]]
    return Table(name, Base.metadata, *columns, *indexes)


SHADOWS: dict[str, Table] = {
    live.name: _shadow(live)
    for live in (INSTANCES, ACTIONS, ACTION_EVENTS, FAULTS, INSTANCE_TAGS, ALLOCATIONS,
                 GROUP_MEMBERS)
}  # fmt: skip
