"""The plain records the persistence ports (services/common/stores.py and
services/conductor/build_path/ports.py) take and give, with the constants use cases share
with the SQL. They live here, not beside their queries in services/common/db, so that a use
case can name them without importing SQLAlchemy (the "use-cases" import-linter contract);
the db modules re-export them for their callers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network

from services.common.domain import GroupPolicy, HostState, VmState
from services.common.instance_actions import ActionEventName, ActionName, ActionResult
from services.common.networking import Direction, IpProtocol
from services.common.request_spec import StoredSpec

# Quotas: the resources counted, Nova's defaults (10 instances, 20 cores, 50 GiB of RAM), and
# the limit that means none.
QUOTA_RESOURCES = ("instances", "cores", "ram")
QUOTA_DEFAULTS = {"instances": 10, "cores": 20, "ram": 51200}
QUOTA_UNLIMITED = -1

# The security group every project gets on first use.
DEFAULT_SECURITY_GROUP_NAME = "default"
DEFAULT_SECURITY_GROUP_DESCRIPTION = "Default security group"


@dataclass(frozen=True, slots=True)
class NewAction:
    instance_uuid: str
    action: ActionName
    request_id: str
    project_id: str


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event to add, or (``finish_only``) the open event of that name and host to close."""

    instance_uuid: str
    action: ActionName
    event: ActionEventName
    host: str | None
    result: ActionResult | None = None
    details: str = ""
    finish: bool = True


@dataclass(frozen=True, slots=True)
class Placement:
    uuid: str
    host: str
    node: str
    request_spec: StoredSpec | None = None


@dataclass(frozen=True, slots=True)
class NewNetwork:
    project_id: str
    name: str
    cidr: IPv4Network
    gateway: IPv4Address | None
    dns_servers: tuple[IPv4Address, ...]
    allocation_pools: tuple[tuple[IPv4Address, IPv4Address], ...]
    shared: bool = False
    is_default: bool = False
    mtu: int = 1500


@dataclass(frozen=True, slots=True)
class NewPort:
    instance_uuid: str
    network_id: str
    device_index: int
    mac: str
    fixed_ip: IPv4Address


@dataclass(frozen=True, slots=True)
class KeyedCreate:
    reservation_id: str
    server_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Usage:
    instances: int
    cores: int
    ram: int

    def get(self, resource: str) -> int:
        value: int = getattr(self, resource)
        return value


@dataclass(frozen=True, slots=True)
class GroupRule:
    """A rule as stored and shown: its remote is a CIDR, a group, or neither (any)."""

    id: str
    group_id: str
    direction: Direction
    protocol: IpProtocol
    port_min: int | None
    port_max: int | None
    remote_cidr: IPv4Network | None
    remote_group_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SecurityGroup:
    id: str
    project_id: str
    name: str
    description: str
    created_at: datetime
    rules: tuple[GroupRule, ...] = ()


@dataclass(frozen=True, slots=True)
class NewRule:
    group_id: str
    direction: Direction
    protocol: IpProtocol = IpProtocol.ANY
    port_min: int | None = None
    port_max: int | None = None
    remote_cidr: IPv4Network | None = None
    remote_group_id: str | None = None


@dataclass(frozen=True, slots=True)
class Keypair:
    name: str
    project_id: str
    public_key: str
    fingerprint: str
    type: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ServerGroup:
    uuid: str
    name: str
    project_id: str
    policy: GroupPolicy
    created_at: datetime
    members: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeView:
    """A compute node as an operator sees it (os-services + os-hypervisors)."""

    state: HostState
    disabled_reason: str | None
    last_heartbeat: datetime


@dataclass(frozen=True, slots=True)
class ActionEvent:
    event: str
    host: str | None
    start_time: datetime
    finish_time: datetime | None
    result: str | None
    details: str


@dataclass(frozen=True, slots=True)
class Action:
    instance_uuid: str
    action: str
    request_id: str
    project_id: str
    start_time: datetime
    finish_time: datetime | None
    message: str | None
    events: tuple[ActionEvent, ...]


@dataclass(frozen=True, slots=True)
class ServerFilter:
    project_id: str | None
    reservation_id: str | None = None
    name_regex: str | None = None
    vm_states: tuple[VmState, ...] = ()
    flavor_ids: tuple[str, ...] = ()
    image_id: str | None = None
    tags: tuple[str, ...] = ()
    changes_since: datetime | None = None
    host: str | None = None
    include_deleted: bool = False


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last row of a page: the next page starts strictly after it. The server's uuid, not
    its row id, breaks ties: page tokens carry the cursor and show no internal ids."""

    created_at: datetime
    uuid: str
