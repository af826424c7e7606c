"""The persistence ports: the stores use cases read and write through, and the unit of work
that gives a piece of work one transaction (cosmicpython's AbstractRepository and
AbstractUnitOfWork, as Protocols).

A unit of work runs a plain function of a transaction's stores (``work(tx)``) on a database
thread, so a use case keeps its logic in one place and reads it top to bottom while the
SQL stays in ``services.common.db`` (``services.common.db.stores`` implements these on
SQLAlchemy; ``tests/support/fake_stores.py`` in memory). ``work`` may run more than once
(the SQL unit of work retries a transaction that PostgreSQL aborted to break a deadlock), so
it builds all its state inside.

Each use case names the stores it needs in a small ``Protocol`` of its own (its ``Tx``);
one transaction object that has them all fits every one of those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol, TypeVar

from services.common.domain import (
    ComputeNodeReport,
    Flavor,
    GroupPolicy,
    HostInstance,
    HostState,
    Image,
    Instance,
    PowerState,
    TaskState,
    VmState,
)
from services.common.instance_actions import ActionName
from services.common.networking import AddressSet, Network
from services.common.records import (
    Action,
    Cursor,
    GroupRule,
    KeyedCreate,
    Keypair,
    NewAction,
    NewNetwork,
    NewPort,
    NewRule,
    NodeView,
    SecurityGroup,
    ServerFilter,
    ServerGroup,
    Usage,
)

T = TypeVar("T")
Tx_co = TypeVar("Tx_co", covariant=True)


# The most instances one watch read returns (a snapshot, or the changes of one poll).
WATCH_MAX = 1000


class UnitOfWork(Protocol[Tx_co]):
    """Runs ``work`` in one transaction: committed when it returns, rolled back when it
    raises (the exception goes to the caller)."""

    async def write(self, work: Callable[[Tx_co], T]) -> T: ...

    async def read(self, work: Callable[[Tx_co], T], *, timeout: float | None = None) -> T:
        """A read-only transaction; stopped (DeadlineExceeded) after ``timeout`` seconds
        (default: the adapter's own limit)."""
        ...


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """Why an instance went to ERROR (an instance fault row)."""

    uuid: str
    code: int
    message: str
    details: str = ""
    host: str | None = None


@dataclass
class Findings:
    """What the reconciler finds left behind (one read transaction)."""

    unscheduled: dict[str, list[str]] = field(default_factory=dict)  # reservation -> uuids
    deleting: list[str] = field(default_factory=list)
    on_down_hosts: list[tuple[str, str]] = field(default_factory=list)  # (uuid, host)
    timed_out: list[str] = field(default_factory=list)
    stuck_power: list[str] = field(default_factory=list)
    # Placed on a live host that has not said it started them.
    unsent: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.unscheduled or self.deleting or self.on_down_hosts or self.timed_out
            or self.stuck_power or self.unsent
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class UnfinishedCutoffs:
    """The moments before which each kind of unfinished work counts as stuck."""

    now: datetime
    scheduling_grace: timedelta
    service_down_time: timedelta
    instance_build_timeout: timedelta
    power_action_timeout: timedelta


@dataclass(frozen=True, slots=True)
class WatchScope:
    """The servers one watcher covers: one server, one reservation, or a whole project
    (``project_id`` None: every project, for admins)."""

    project_id: str | None
    server_id: str = ""
    reservation_id: str = ""


class InstanceStore(Protocol):
    def get(self, uuid: str, *, project_id: str | None) -> Instance | None:
        """The instance (of ``project_id``, when given), deleted ones too."""
        ...

    def load(self, uuids: Sequence[str], *, for_update: bool = False) -> list[Instance]:
        """``for_update``: the rows stay locked (PostgreSQL) until the transaction ends."""
        ...

    def host_history(self, uuids: Sequence[str]) -> dict[str, frozenset[str]]:
        """Per known instance, the hosts it is or was placed on (its host and the hosts its
        builds were tried on); unknown uuids are absent."""
        ...

    def unfinished(self, cutoffs: UnfinishedCutoffs) -> Findings: ...

    def host_address(self, uuid: str) -> str | None:
        """The rpc address of the compute node the instance is on (None: no host, or the
        host's node record is gone)."""
        ...

    def mark_error(self, faults: Sequence[FaultRecord], now: datetime) -> None: ...

    def mark_deleting(self, uuid: str, *, project_id: str | None, now: datetime) -> Instance | None:
        """Record the intent to delete (task ``deleting``); None if no such live instance."""
        ...

    def start_power_action(
        self,
        uuid: str,
        *,
        project_id: str | None,
        allowed: Sequence[VmState],
        task: TaskState,
        now: datetime,
    ) -> Instance | None:
        """Set ``task`` if the instance is in one of ``allowed`` with no task running; None
        if not."""
        ...

    def mark_deleted(self, uuids: Sequence[str], now: datetime) -> None:
        """DELETED, with the instances' ports and security-group memberships released."""
        ...

    def settle_power_action(
        self,
        uuids: Sequence[str],
        *,
        vm_state: VmState | None,
        power: PowerState | None,
        now: datetime,
    ) -> None:
        """End a power task (only a power task: a delete keeps its ``deleting``)."""
        ...

    def watched(
        self,
        scopes: Sequence[WatchScope],
        *,
        since: datetime | None,
        checkpoint: Callable[[], None] | None = None,
    ) -> list[Instance]:
        """The instances any scope covers, oldest first, at most the adapter's limit (1000);
        ``since`` None: a snapshot (a project's live servers); else what changed since,
        deletes included. ``checkpoint`` is called every few dozen rows (pacing)."""
        ...

    def archived_since(self, scope: WatchScope, *, since: datetime) -> bool:
        """Whether a server of ``scope`` was archived (its deletion gone from the live
        table) after ``since``: a watch resumed from there could not be complete."""
        ...

    def live_uuids(self, uuids: Sequence[str], *, project_id: str | None) -> set[str]:
        """Which of ``uuids`` are servers not deleted (of ``project_id``, when given)."""
        ...

    def insert(self, instances: Sequence[Instance]) -> None: ...

    def projects_of(self, uuids: Sequence[str]) -> set[str]: ...

    def placed_in_projects(self, project_ids: Sequence[str]) -> set[str]:
        """The servers of these projects that are not deleted and have a host."""
        ...

    def on_hypervisors_other_than(self, uuids: Sequence[str], hypervisor_type: str) -> set[str]:
        """Those of ``uuids`` placed on a node whose hypervisor is not ``hypervisor_type``."""
        ...

    def on_host(self, host: str) -> list[HostInstance]:
        """Every live instance placed on ``host``, with its ports."""
        ...

    def count_by_state(self) -> dict[str, int]:
        """vm_state value -> how many instances are in it."""
        ...

    def oldest_building(self) -> datetime | None:
        """When the oldest instance still building was created (None: none is)."""
        ...


class NodeStore(Protocol):
    def rpc_addresses(self, hosts: Sequence[str]) -> dict[str, str]:
        """host -> rpc address, for the hosts that have a node record."""
        ...

    def zones(self) -> set[str]:
        """The availability zones that have compute hosts."""
        ...

    def host_exists(self, host: str) -> bool: ...

    def upsert(self, report: ComputeNodeReport, now: datetime) -> int:
        """Register a node or refresh its heartbeat; its id. A capacity change bumps the
        node's generation (no claim computed against the old capacity can land)."""
        ...

    def views(self, *, now: datetime, service_down_time: timedelta) -> list[NodeView]:
        """Every node as an operator sees it, by host."""
        ...

    def set_status(self, host: str, *, enabled: bool, reason: str | None, now: datetime) -> bool:
        """False when there is no such host."""
        ...

    def hypervisors(self, hosts: Sequence[str]) -> dict[str, tuple[str, str]]:
        """host -> (rpc address, hypervisor type), for the hosts that have a node record."""
        ...

    def host_states(self, *, now: datetime, service_down_time: timedelta) -> list[HostState]:
        """Every compute node with its usage (up: a heartbeat within ``service_down_time``)."""
        ...


class AllocationStore(Protocol):
    def free(self, uuids: Sequence[str]) -> int:
        """Drop the instances' placement claims; their nodes' usage shrinks by as much."""
        ...


class ActionStore(Protocol):
    def start(self, actions: Sequence[NewAction], now: datetime) -> None: ...

    def finish(
        self, uuids: Sequence[str], action: ActionName, now: datetime, *, message: str | None = None
    ) -> None:
        """End the latest ``action`` of each instance (``message``: why it failed)."""
        ...

    def list_actions(self, instance_uuid: str) -> list[Action]:
        """A server's actions with their events, oldest first."""
        ...


class ServerSearchStore(Protocol):
    def search(
        self,
        filters: ServerFilter,
        *,
        limit: int,
        after: Cursor | None = None,
        checkpoint: Callable[[], None],
    ) -> tuple[list[Instance], Cursor | None]:
        """One page of servers (keyset pagination, stable under concurrent inserts) and the
        cursor of the next one; ``checkpoint`` is called every few dozen rows."""
        ...


class CatalogStore(Protocol):
    def find_flavor(self, ref: str) -> Flavor | None:
        """By id, else by name."""
        ...

    def find_image(self, ref: str, *, field: str = "image_ref") -> Image | None:
        """By id, else by name; InvalidArgument(``field``) when a name is ambiguous."""
        ...

    def list_flavors(self) -> list[Flavor]: ...

    def flavor_taken(self, flavor_id: str, name: str) -> str | None:
        """ "id" or "name" when a flavor has that id or name already, else None."""
        ...

    def create_flavor(self, flavor: Flavor, now: datetime) -> None: ...

    def delete_flavor(self, flavor_id: str) -> bool: ...

    def add_image(self, image: Image, now: datetime) -> None: ...

    def list_images(self) -> list[Image]: ...

    def retire_images(self, image_ids: list[str]) -> None:
        """Status "deleted": servers built from them keep their reference."""
        ...


class ServerGroupStore(Protocol):
    def exists(self, group_uuid: str, *, project_id: str | None) -> bool:
        """The server group exists (in ``project_id``, when given)."""
        ...

    def add_members(
        self, group_uuid: str, instance_uuids: Sequence[str], now: datetime
    ) -> None: ...

    def create(
        self, *, name: str, project_id: str, policy: GroupPolicy, now: datetime
    ) -> ServerGroup: ...

    def get(self, group_uuids: Sequence[str], *, project_id: str | None) -> dict[str, ServerGroup]:
        """The groups found (of ``project_id``, when given), with their live members."""
        ...

    def list_groups(self, *, project_id: str | None) -> list[ServerGroup]: ...

    def delete(self, group_uuid: str) -> None: ...


class KeypairStore(Protocol):
    def public_key(self, *, project_id: str, name: str) -> str | None:
        """The key pair's public key; None when the project has no key pair of that name."""
        ...

    def get(self, *, project_id: str, name: str) -> Keypair | None: ...

    def add(self, *, project_id: str, name: str, public_key: str, now: datetime) -> Keypair:
        """``public_key`` must parse (keypairs.parse_public_key)."""
        ...

    def list_keypairs(self, *, project_id: str) -> list[Keypair]:
        """By name."""
        ...

    def remove(self, *, project_id: str, name: str) -> bool: ...


class QuotaStore(Protocol):
    def limits(self, project_id: str, defaults: dict[str, int]) -> dict[str, int]:
        """The project's limit of every resource (``defaults`` where it has none set)."""
        ...

    def usage(self, project_id: str) -> Usage:
        """What the project's servers that are not deleted hold."""
        ...

    def set_limits(self, project_id: str, new: dict[str, int]) -> None: ...


class IdempotencyStore(Protocol):
    """client_request_id keys: which servers a keyed create made."""

    def find(
        self, project_id: str, client_request_id: str, *, since: datetime
    ) -> KeyedCreate | None: ...

    def claim(
        self,
        project_id: str,
        client_request_id: str,
        *,
        reservation_id: str,
        server_ids: Sequence[str],
        now: datetime,
        expired_before: datetime,
    ) -> bool:
        """Record the key for these servers (dropping an expired one); False when another
        create holds it. On a database the unique key decides between racing creates."""
        ...


class NetworkStore(Protocol):
    def default_network(self, project_id: str) -> Network | None: ...

    def find(self, ref: str, *, project_id: str | None) -> list[Network]:
        """Networks with this id or name the project may use (its own and shared ones; an
        id wins, then the project's own name); more than one means the name is ambiguous."""
        ...

    def project_cidrs(self, project_id: str) -> list[tuple[str, IPv4Network]]: ...

    def list_networks(self, *, project_id: str | None) -> list[Network]:
        """Those the project may use (its own and shared ones), oldest first; every one for
        ``None``."""
        ...

    def ports_on(self, network_id: str) -> int:
        """How many ports (so addresses) the network has in use."""
        ...

    def delete(self, network_id: str) -> bool: ...

    def create(self, new: NewNetwork, now: datetime) -> Network | None:
        """None when the project has a network of that name already."""
        ...

    def lock(self, network_ids: Sequence[str]) -> None:
        """Serialise address allocation on these networks until the transaction ends."""
        ...

    def addresses_in_use(
        self, network_id: str, addresses: Sequence[IPv4Address]
    ) -> set[IPv4Address]:
        """Those of ``addresses`` some port of the network has (one query however many)."""
        ...

    def macs_in_use(self, macs: Sequence[str]) -> set[str]:
        """Those of ``macs`` some port has (one query however many)."""
        ...

    def insert_ports(self, ports: Sequence[NewPort], now: datetime) -> None: ...

    def usage_per_network(self) -> list[tuple[Network, int]]:
        """Every network with how many ports (so addresses) it has in use."""
        ...


class SecurityGroupStore(Protocol):
    def ensure_default(self, project_id: str, now: datetime) -> SecurityGroup:
        """The project's "default" group, made with its rules on first use."""
        ...

    def find(self, ref: str, *, project_id: str | None, lock: bool = False) -> list[SecurityGroup]:
        """Groups with this id or name (an id wins); ``lock``: none can be deleted before
        the transaction ends."""
        ...

    def add_memberships(self, pairs: Iterable[tuple[str, str]]) -> None:
        """(instance uuid, group id) pairs."""
        ...

    def create(
        self, *, project_id: str, name: str, description: str, now: datetime
    ) -> SecurityGroup | None:
        """None when the project has a group of that name already."""
        ...

    def get_group(self, group_id: str) -> SecurityGroup | None: ...

    def list_groups(self, *, project_id: str | None) -> list[SecurityGroup]: ...

    def lock_for_delete(self, group_id: str) -> bool:
        """Lock the group's row for its delete; False when it is gone."""
        ...

    def servers_using(self, group_id: str) -> int:
        """How many live servers have the group."""
        ...

    def groups_referring_to(self, group_id: str) -> list[str]:
        """Names of the other groups with rules whose remote group this is."""
        ...

    def delete(self, group_id: str) -> None:
        """The group with its rules."""
        ...

    def same_rule(self, new: NewRule) -> GroupRule | None: ...

    def insert_rule(self, new: NewRule, now: datetime) -> GroupRule: ...

    def get_rule(self, rule_id: str) -> GroupRule | None: ...

    def delete_rule(self, rule_id: str) -> bool: ...

    def lock_server(self, server_id: str, *, project_id: str | None) -> str | None:
        """The live server's project (None: no such server in ``project_id``), its row
        locked until commit so that a concurrent delete runs wholly before or after."""
        ...

    def group_ids_of(self, instance_uuid: str) -> list[str]: ...

    def remove_membership(self, instance_uuid: str, group_id: str) -> bool: ...

    def set_shown_names(self, instance_uuid: str, now: datetime) -> None:
        """Refresh the group names the server shows."""
        ...

    def instances_affected_by_groups(self, group_ids: Sequence[str]) -> list[str]:
        """The servers whose port rules these groups' rules or members shape."""
        ...

    def address_sets(self, group_ids: Sequence[str]) -> dict[str, AddressSet]:
        """Each group's members' port addresses (every group asked for; none: empty)."""
        ...

    def remote_groups_of_projects(self, project_ids: Sequence[str]) -> list[str]:
        """The groups of these projects some rule names as remote group: the address sets
        a server of the projects changes by coming or going."""
        ...

    def hosts_naming_groups(self, group_ids: Sequence[str]) -> dict[str, set[str]]:
        """host -> which of these groups its live instances' rules name as remote group."""
        ...
