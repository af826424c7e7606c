"""Hand-written in-memory fakes of the persistence ports (services.common.stores), for unit
tests of use cases without a database.

One ``FakeDatabase`` holds the rows; ``FakeUnitOfWork`` runs work on a ``FakeTransaction``
(every fake store on that state) and, like a real transaction, keeps nothing of a piece of
work that raised. Each store mirrors what its SQL twin in services.common.db.stores does;
where the SQL relies on the database (a lock, a unique key), the fake says so.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv4Network
from typing import Any, TypeVar
from uuid import uuid4

from services.common.domain import (
    ComputeNodeReport,
    Flavor,
    GroupPolicy,
    HostInstance,
    HostState,
    Image,
    Instance,
    PowerState,
    Resources,
    TaskState,
    VmState,
    utcnow,
)
from services.common.errors import InvalidArgument
from services.common.networking import AddressSet, Network, referenced_groups, sets_for
from services.common.public_keys import parse_public_key
from services.common.records import (
    DEFAULT_SECURITY_GROUP_DESCRIPTION as DEFAULT_DESCRIPTION,
)
from services.common.records import DEFAULT_SECURITY_GROUP_NAME as DEFAULT_NAME
from services.common.records import QUOTA_DEFAULTS as DEFAULTS
from services.common.records import (
    KeyedCreate,
    Keypair,
    NewAction,
    NewNetwork,
    NewPort,
    NodeView,
    SecurityGroup,
    ServerGroup,
    Usage,
)
from services.common.stores import FaultRecord, Findings, UnfinishedCutoffs, WatchScope

T = TypeVar("T")

POWER_TASKS = frozenset(
    {TaskState.POWERING_OFF, TaskState.POWERING_ON, TaskState.REBOOTING, TaskState.REBOOTING_HARD}
)
WATCH_MAX = 1000


@dataclass
class FakeNode:
    host: str
    rpc_address: str
    last_heartbeat_at: datetime
    availability_zone: str = "nova"
    enabled: bool = True
    hypervisor_type: str = "QEMU"
    disabled_reason: str | None = None
    total: Resources = field(default_factory=lambda: Resources(16, 32768, 400))


@dataclass
class FakeAction:
    instance_uuid: str
    action: str
    request_id: str
    project_id: str
    start_time: datetime
    finish_time: datetime | None = None
    message: str | None = None


@dataclass
class FakeDatabase:
    """The rows. Tests arrange them directly and assert on them after the use case ran."""

    instances: dict[str, Instance] = field(default_factory=dict)
    nodes: dict[str, FakeNode] = field(default_factory=dict)
    # instance uuid -> host of its placement claim
    allocations: dict[str, str] = field(default_factory=dict)
    actions: list[FakeAction] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    flavors: dict[str, Flavor] = field(default_factory=dict)  # by id
    images: dict[str, Image] = field(default_factory=dict)  # by id
    server_groups: dict[str, ServerGroup] = field(default_factory=dict)  # by uuid
    group_members: list[tuple[str, str]] = field(default_factory=list)  # (group, instance)
    keypairs: dict[tuple[str, str], Keypair] = field(default_factory=dict)  # (project, name)
    quota_limits: dict[tuple[str, str], int] = field(default_factory=dict)  # (project, resource)
    # (project, client_request_id) -> (the create, when it was keyed)
    create_requests: dict[tuple[str, str], tuple[KeyedCreate, datetime]] = field(
        default_factory=dict
    )
    networks: dict[str, Network] = field(default_factory=dict)  # by id
    ports: list[NewPort] = field(default_factory=list)
    security_groups: dict[str, SecurityGroup] = field(default_factory=dict)  # by id
    memberships: list[tuple[str, str]] = field(default_factory=list)  # (instance, group)

    def add(self, *instances: Instance) -> None:
        for instance in instances:
            self.instances[instance.uuid] = instance

    def action_of(self, uuid: str, action: str) -> FakeAction:
        """The latest ``action`` of the instance."""
        return [a for a in self.actions if a.instance_uuid == uuid and a.action == action][-1]


def make_instance(**changes: Any) -> Instance:
    """A building instance of project ``demo`` (fields overridden by ``changes``)."""
    values: dict[str, Any] = {
        "uuid": str(uuid4()), "id": None, "display_name": "vm", "project_id": "demo",
        "flavor": Flavor("1", "m1.tiny", 1, 512, 1), "image_id": "image-1",
        "reservation_id": "r-1", "vm_state": VmState.BUILDING,
        "task_state": TaskState.SCHEDULING, "power_state": PowerState.NOSTATE, "host": None,
        "node": None, "metadata": {}, "created_at": utcnow(),
    }  # fmt: skip
    values.update(changes)
    return Instance(**values)


def _changed_before(instance: Instance, moment: datetime) -> bool:
    return (instance.updated_at or instance.created_at) < moment


def _building(instance: Instance) -> bool:
    return instance.vm_state is VmState.BUILDING


class FakeInstances:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    def get(self, uuid: str, *, project_id: str | None) -> Instance | None:
        found = self._db.instances.get(uuid)
        if found is None or (project_id is not None and found.project_id != project_id):
            return None
        return found

    def load(self, uuids: Sequence[str], *, for_update: bool = False) -> list[Instance]:
        # for_update: a lock in the database; one thread of fake work needs none.
        found = [self._db.instances[u] for u in uuids if u in self._db.instances]
        # As the database's load: with the address sets the ports' rules name.
        named = referenced_groups(p for i in found for p in i.ports)
        known = member_addresses(self._db, sorted(named))
        return [replace(i, address_sets=sets_for(i.ports, known)) if i.ports else i for i in found]

    def host_history(self, uuids: Sequence[str]) -> dict[str, frozenset[str]]:
        return {
            u: frozenset((i.host,) if i.host else ()) | set(i.request_spec.tried_hosts)
            for u in uuids
            if (i := self._db.instances.get(u)) is not None
        }

    def unfinished(self, cutoffs: UnfinishedCutoffs) -> Findings:
        now = cutoffs.now
        grace = now - cutoffs.scheduling_grace
        down = now - cutoffs.service_down_time
        found = Findings()
        unscheduled: dict[str, list[str]] = defaultdict(list)
        for i in sorted(self._db.instances.values(), key=lambda i: i.created_at):
            node = self._db.nodes.get(i.host) if i.host else None
            not_deleting = i.task_state is not TaskState.DELETING
            if (
                _building(i) and i.task_state is TaskState.SCHEDULING and i.host is None
                and _changed_before(i, grace)
            ):  # fmt: skip
                unscheduled[i.reservation_id].append(i.uuid)
            if (
                i.task_state is TaskState.DELETING and i.vm_state is not VmState.DELETED
                and _changed_before(i, grace)
            ):  # fmt: skip
                found.deleting.append(i.uuid)
            if (
                _building(i) and not_deleting and node is not None
                and node.last_heartbeat_at < down and _changed_before(i, grace)
            ):  # fmt: skip
                found.on_down_hosts.append((i.uuid, node.host))
            if (
                _building(i)
                and not_deleting
                and i.created_at < now - cutoffs.instance_build_timeout
            ):
                found.timed_out.append(i.uuid)
            if i.task_state in POWER_TASKS and _changed_before(
                i, now - cutoffs.power_action_timeout
            ):
                found.stuck_power.append(i.uuid)
            if (
                _building(i) and i.task_state is None and node is not None
                and node.last_heartbeat_at >= down and _changed_before(i, grace)
            ):  # fmt: skip
                found.unsent.append(i.uuid)
        found.unscheduled = dict(unscheduled)
        return found

    def host_address(self, uuid: str) -> str | None:
        instance = self._db.instances.get(uuid)
        if instance is None or instance.host is None or instance.host not in self._db.nodes:
            return None
        return self._db.nodes[instance.host].rpc_address

    def mark_error(self, faults: Sequence[FaultRecord], now: datetime) -> None:
        for fault in faults:
            self._update([fault.uuid], vm_state=VmState.ERROR, task_state=None, updated_at=now)
        self._db.faults.extend(faults)

    def mark_deleting(self, uuid: str, *, project_id: str | None, now: datetime) -> Instance | None:
        found = self.get(uuid, project_id=project_id)
        if found is None or found.vm_state is VmState.DELETED:
            return None
        self._update([uuid], task_state=TaskState.DELETING, updated_at=now)
        return self._db.instances[uuid]

    def start_power_action(
        self,
        uuid: str,
        *,
        project_id: str | None,
        allowed: Sequence[VmState],
        task: TaskState,
        now: datetime,
    ) -> Instance | None:
        found = self.get(uuid, project_id=project_id)
        if found is None or found.vm_state not in allowed or found.task_state is not None:
            return None
        self._update([uuid], task_state=task, updated_at=now)
        return self._db.instances[uuid]

    def mark_deleted(self, uuids: Sequence[str], now: datetime) -> None:
        live = [u for u in uuids if self._live(u)]
        self._update(live, vm_state=VmState.DELETED, task_state=None,
                     power_state=PowerState.NOSTATE, updated_at=now)  # fmt: skip

    def settle_power_action(
        self,
        uuids: Sequence[str],
        *,
        vm_state: VmState | None,
        power: PowerState | None,
        now: datetime,
    ) -> None:
        for uuid in uuids:
            instance = self._db.instances.get(uuid)
            if instance is None or instance.task_state not in POWER_TASKS:
                continue
            self._db.instances[uuid] = replace(
                instance,
                task_state=None,
                updated_at=now,
                vm_state=instance.vm_state if vm_state is None else vm_state,
                power_state=instance.power_state if power is None else power,
            )

    def watched(
        self,
        scopes: Sequence[WatchScope],
        *,
        since: datetime | None,
        checkpoint: Callable[[], None] | None = None,
    ) -> list[Instance]:
        if checkpoint is not None:
            checkpoint()
        found = []
        for i in sorted(self._db.instances.values(), key=lambda i: i.created_at):
            if since is not None and (i.updated_at or i.created_at) < since:
                continue
            if any(_covers(scope, i, snapshot=since is None) for scope in scopes):
                found.append(i)
        return found[:WATCH_MAX]

    def archived_since(self, scope: WatchScope, *, since: datetime) -> bool:
        # archiving has no in-memory side: nothing is ever archived here
        return False

    def live_uuids(self, uuids: Sequence[str], *, project_id: str | None) -> set[str]:
        return {
            u
            for u in uuids
            if self._live(u)
            and (project_id is None or self._db.instances[u].project_id == project_id)
        }

    def insert(self, instances: Sequence[Instance]) -> None:
        for instance in instances:
            if instance.uuid in self._db.instances:
                raise AssertionError(f"duplicate instance {instance.uuid}")  # a primary key
            self._db.instances[instance.uuid] = instance

    def projects_of(self, uuids: Sequence[str]) -> set[str]:
        return {self._db.instances[u].project_id for u in uuids if u in self._db.instances}

    def placed_in_projects(self, project_ids: Sequence[str]) -> set[str]:
        return {
            i.uuid
            for i in self._db.instances.values()
            if i.project_id in project_ids and i.vm_state is not VmState.DELETED and i.host
        }

    def on_hypervisors_other_than(self, uuids: Sequence[str], hypervisor_type: str) -> set[str]:
        found = set()
        for uuid in uuids:
            instance = self._db.instances.get(uuid)
            node = self._db.nodes.get(instance.host) if instance and instance.host else None
            if node is not None and node.hypervisor_type != hypervisor_type:
                found.add(uuid)
        return found

    def on_host(self, host: str) -> list[HostInstance]:
        return [
            HostInstance(
                uuid=i.uuid,
                vm_state=i.vm_state,
                task_state=i.task_state,
                power_state=i.power_state,
                resources=i.resources,
                ports=i.ports,
            )
            for i in self._db.instances.values()
            if i.host == host and i.vm_state is not VmState.DELETED
        ]

    def count_by_state(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for instance in self._db.instances.values():
            counts[instance.vm_state.value] += 1
        return dict(counts)

    def oldest_building(self) -> datetime | None:
        building = [i.created_at for i in self._db.instances.values() if _building(i)]
        return min(building, default=None)

    def _live(self, uuid: str) -> bool:
        instance = self._db.instances.get(uuid)
        return instance is not None and instance.vm_state is not VmState.DELETED

    def _update(self, uuids: Sequence[str], **changes: Any) -> None:
        for uuid in uuids:
            if uuid in self._db.instances:
                self._db.instances[uuid] = replace(self._db.instances[uuid], **changes)


def _covers(scope: WatchScope, instance: Instance, *, snapshot: bool) -> bool:
    if scope.project_id is not None and instance.project_id != scope.project_id:
        return False
    if scope.server_id:
        return instance.uuid == scope.server_id
    if scope.reservation_id:
        return instance.reservation_id == scope.reservation_id
    return not snapshot or instance.vm_state is not VmState.DELETED


class FakeNodes:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    def rpc_addresses(self, hosts: Sequence[str]) -> dict[str, str]:
        return {h: self._db.nodes[h].rpc_address for h in hosts if h in self._db.nodes}

    def upsert(self, report: ComputeNodeReport, now: datetime) -> int:
        known = self._db.nodes.get(report.host)
        self._db.nodes[report.host] = FakeNode(
            report.host, report.rpc_address, now, availability_zone=report.availability_zone,
            enabled=known.enabled if known else True,
            total=Resources(report.vcpus, report.memory_mb, report.local_gb),
            hypervisor_type=report.hypervisor_type,
            disabled_reason=known.disabled_reason if known else None,
        )  # fmt: skip
        return list(self._db.nodes).index(report.host) + 1

    def views(self, *, now: datetime, service_down_time: timedelta) -> list[NodeView]:
        states = {s.host: s for s in self.host_states(now=now, service_down_time=service_down_time)}
        return [
            NodeView(states[h], n.disabled_reason, n.last_heartbeat_at)
            for h, n in sorted(self._db.nodes.items())
        ]

    def set_status(self, host: str, *, enabled: bool, reason: str | None, now: datetime) -> bool:
        node = self._db.nodes.get(host)
        if node is None:
            return False
        node.enabled = enabled
        node.disabled_reason = None if enabled else reason
        return True

    def hypervisors(self, hosts: Sequence[str]) -> dict[str, tuple[str, str]]:
        return {
            h: (self._db.nodes[h].rpc_address, self._db.nodes[h].hypervisor_type)
            for h in hosts
            if h in self._db.nodes
        }

    def zones(self) -> set[str]:
        return {n.availability_zone for n in self._db.nodes.values()}

    def host_states(self, *, now: datetime, service_down_time: timedelta) -> list[HostState]:
        states = []
        for node_id, node in enumerate(self._db.nodes.values(), start=1):
            placed = [i for h, i in self._placed() if h == node.host]
            used = sum((i.resources for i in placed), Resources(0, 0, 0))
            states.append(
                HostState(
                    node_id=node_id,
                    host=node.host,
                    hypervisor_hostname=node.host,
                    rpc_address=node.rpc_address,
                    total=node.total,
                    used=used,
                    cpu_allocation_ratio=1.0,
                    ram_allocation_ratio=1.0,
                    disk_allocation_ratio=1.0,
                    generation=1,
                    enabled=node.enabled,
                    is_up=node.last_heartbeat_at >= now - service_down_time,
                    availability_zone=node.availability_zone,
                    instance_count=len(placed),
                )
            )
        return states

    def _placed(self) -> list[tuple[str, Instance]]:
        """(host, instance) of every placement claim."""
        return [
            (host, self._db.instances[u])
            for u, host in self._db.allocations.items()
            if u in self._db.instances
        ]

    def host_exists(self, host: str) -> bool:
        return host in self._db.nodes


class FakeAllocations:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    def free(self, uuids: Sequence[str]) -> int:
        freed = [u for u in uuids if u in self._db.allocations]
        for uuid in freed:
            del self._db.allocations[uuid]
        return len(freed)


class FakeActions:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    def start(self, actions: Sequence[NewAction], now: datetime) -> None:
        self._db.actions.extend(
            FakeAction(a.instance_uuid, a.action, a.request_id, a.project_id, now) for a in actions
        )

    def finish(
        self, uuids: Sequence[str], action: str, now: datetime, *, message: str | None = None
    ) -> None:
        for a in self._db.actions:
            if a.instance_uuid in uuids and a.action == action and a.finish_time is None:
                a.finish_time = now
                a.message = message[:255] if message else None


class FakeCatalog:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    def find_flavor(self, ref: str) -> Flavor | None:
        if ref in self._db.flavors:
            return self._db.flavors[ref]
        return next((f for f in self._db.flavors.values() if f.name == ref), None)

    def find_image(self, ref: str, *, field: str = "image_ref") -> Image | None:
        if ref in self._db.images:
            return self._db.images[ref]
        named = [i for i in self._db.images.values() if i.name == ref and i.status != "deleted"]
        if len(named) > 1:
            raise InvalidArgument(field, f"image name {ref!r} is ambiguous: use the image id")
        return named[0] if named else None

    def list_flavors(self) -> list[Flavor]:
        return sorted(self._db.flavors.values(), key=lambda f: (f.memory_mb, f.id))

    def flavor_taken(self, flavor_id: str, name: str) -> str | None:
        if flavor_id in self._db.flavors:
            return "id"
        return "name" if any(f.name == name for f in self._db.flavors.values()) else None

    def create_flavor(self, flavor: Flavor, now: datetime) -> None:
        self._db.flavors[flavor.id] = flavor

    def delete_flavor(self, flavor_id: str) -> bool:
        return self._db.flavors.pop(flavor_id, None) is not None

    def add_image(self, image: Image, now: datetime) -> None:
        self._db.images[image.id] = replace(image, created_at=now)

    def list_images(self) -> list[Image]:
        live = [i for i in self._db.images.values() if i.status != "deleted"]
        return sorted(live, key=lambda i: (i.name, i.id))

    def retire_images(self, image_ids: list[str]) -> None:
        for image_id in image_ids:
            if image_id in self._db.images:
                self._db.images[image_id] = replace(self._db.images[image_id], status="deleted")


class FakeServerGroups:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    def exists(self, group_uuid: str, *, project_id: str | None) -> bool:
        return bool(self.get([group_uuid], project_id=project_id))

    def add_members(self, group_uuid: str, instance_uuids: Sequence[str], now: datetime) -> None:
        self._db.group_members.extend((group_uuid, u) for u in instance_uuids)

    def create(
        self, *, name: str, project_id: str, policy: GroupPolicy, now: datetime
    ) -> ServerGroup:
        group = ServerGroup(str(uuid4()), name, project_id, policy, now)
        self._db.server_groups[group.uuid] = group
        return group

    def get(self, group_uuids: Sequence[str], *, project_id: str | None) -> dict[str, ServerGroup]:
        found = {}
        for uuid in group_uuids:
            group = self._db.server_groups.get(uuid)
            if group is None or (project_id is not None and group.project_id != project_id):
                continue
            members = tuple(
                i for g, i in self._db.group_members
                if g == uuid and i in self._db.instances
                and self._db.instances[i].vm_state is not VmState.DELETED
            )  # fmt: skip
            found[uuid] = replace(group, members=members)
        return found

    def list_groups(self, *, project_id: str | None) -> list[ServerGroup]:
        found = self.get(list(self._db.server_groups), project_id=project_id)
        return list(found.values())

    def delete(self, group_uuid: str) -> None:
        self._db.server_groups.pop(group_uuid, None)
        self._db.group_members = [(g, i) for g, i in self._db.group_members if g != group_uuid]


class FakeKeypairs:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    def public_key(self, *, project_id: str, name: str) -> str | None:
        found = self._db.keypairs.get((project_id, name))
        return None if found is None else found.public_key

    def get(self, *, project_id: str, name: str) -> Keypair | None:
        return self._db.keypairs.get((project_id, name))

    def add(self, *, project_id: str, name: str, public_key: str, now: datetime) -> Keypair:
        if (project_id, name) in self._db.keypairs:
            raise AssertionError(f"key pair {name!r} twice")  # the unique key
        key_type, fingerprint = parse_public_key(public_key)
        keypair = Keypair(name, project_id, public_key.strip(), fingerprint, key_type, now)
        self._db.keypairs[(project_id, name)] = keypair
        return keypair

    def list_keypairs(self, *, project_id: str) -> list[Keypair]:
        return sorted(
            (k for (p, _), k in self._db.keypairs.items() if p == project_id), key=lambda k: k.name
        )

    def remove(self, *, project_id: str, name: str) -> bool:
        return self._db.keypairs.pop((project_id, name), None) is not None


class FakeQuotas:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    def limits(self, project_id: str, defaults: dict[str, int]) -> dict[str, int]:
        found = dict(DEFAULTS if defaults is None else defaults)
        for (project, resource), limit in self._db.quota_limits.items():
            if project == project_id:
                found[resource] = limit
        return found

    def set_limits(self, project_id: str, new: dict[str, int]) -> None:
        for resource, limit in new.items():
            self._db.quota_limits[(project_id, resource)] = limit

    def usage(self, project_id: str) -> Usage:
        live = [
            i
            for i in self._db.instances.values()
            if i.project_id == project_id and i.vm_state is not VmState.DELETED
        ]
        return Usage(
            len(live), sum(i.flavor.vcpus for i in live), sum(i.flavor.memory_mb for i in live)
        )


class FakeIdempotency:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    def find(
        self, project_id: str, client_request_id: str, *, since: datetime
    ) -> KeyedCreate | None:
        found = self._db.create_requests.get((project_id, client_request_id))
        return None if found is None or found[1] < since else found[0]

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
        key = (project_id, client_request_id)
        held = self._db.create_requests.get(key)
        if held is not None and held[1] >= expired_before:
            return False
        self._db.create_requests[key] = (KeyedCreate(reservation_id, tuple(server_ids)), now)
        return True


class FakeNetworks:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db
        self.locked: list[str] = []

    def default_network(self, project_id: str) -> Network | None:
        return next(
            (n for n in self._db.networks.values() if n.project_id == project_id and n.is_default),
            None,
        )

    def find(self, ref: str, *, project_id: str | None) -> list[Network]:
        found = [
            n
            for n in self._db.networks.values()
            if ref in (n.id, n.name)
            and (project_id is None or n.project_id == project_id or n.shared)
        ]
        by_id = [n for n in found if n.id == ref]
        if by_id:
            return by_id
        own = [n for n in found if n.project_id == project_id]
        return own or found

    def project_cidrs(self, project_id: str) -> list[tuple[str, IPv4Network]]:
        return [(n.name, n.cidr) for n in self._db.networks.values() if n.project_id == project_id]

    def list_networks(self, *, project_id: str | None) -> list[Network]:
        return sorted(
            (
                n
                for n in self._db.networks.values()
                if project_id is None or n.project_id == project_id or n.shared
            ),
            key=lambda n: (n.created_at, n.id),
        )

    def ports_on(self, network_id: str) -> int:
        return sum(1 for p in self._db.ports if p.network_id == network_id)

    def delete(self, network_id: str) -> bool:
        return self._db.networks.pop(network_id, None) is not None

    def create(self, new: NewNetwork, now: datetime) -> Network | None:
        if any(
            n.project_id == new.project_id and n.name == new.name
            for n in self._db.networks.values()
        ):
            return None
        network = Network(
            id=str(uuid4()), project_id=new.project_id, name=new.name, cidr=new.cidr,
            gateway=new.gateway, dns_servers=new.dns_servers,
            allocation_pools=new.allocation_pools, shared=new.shared,
            is_default=new.is_default, segmentation_id=len(self._db.networks) + 1, mtu=new.mtu,
            created_at=now,
        )  # fmt: skip
        self._db.networks[network.id] = network
        return network

    def lock(self, network_ids: Sequence[str]) -> None:
        self.locked.extend(network_ids)  # one thread of fake work: nothing to wait for

    def addresses_in_use(
        self, network_id: str, addresses: Sequence[IPv4Address]
    ) -> set[IPv4Address]:
        used = {p.fixed_ip for p in self._db.ports if p.network_id == network_id}
        return used & set(addresses)

    def macs_in_use(self, macs: Sequence[str]) -> set[str]:
        return {p.mac for p in self._db.ports} & set(macs)

    def usage_per_network(self) -> list[tuple[Network, int]]:
        return [
            (n, sum(1 for p in self._db.ports if p.network_id == n.id))
            for n in self._db.networks.values()
        ]

    def insert_ports(self, ports: Sequence[NewPort], now: datetime) -> None:
        taken = {(p.network_id, p.fixed_ip) for p in self._db.ports}
        for port in ports:
            if (port.network_id, port.fixed_ip) in taken:  # the unique (network, address)
                raise AssertionError(f"address {port.fixed_ip} taken twice")
            taken.add((port.network_id, port.fixed_ip))
        self._db.ports.extend(ports)


class FakeSecurityGroups:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    def ensure_default(self, project_id: str, now: datetime) -> SecurityGroup:
        found = self.find(DEFAULT_NAME, project_id=project_id)
        if found:
            return found[0]
        group = SecurityGroup(str(uuid4()), project_id, DEFAULT_NAME, DEFAULT_DESCRIPTION, now)
        self._db.security_groups[group.id] = group
        return group

    def find(self, ref: str, *, project_id: str | None, lock: bool = False) -> list[SecurityGroup]:
        found = sorted(
            (
                g
                for g in self._db.security_groups.values()
                if ref in (g.id, g.name) and (project_id is None or g.project_id == project_id)
            ),
            key=lambda g: g.id,
        )
        by_id = [g for g in found if g.id == ref]
        return by_id or found

    def add_memberships(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._db.memberships.extend(pairs)

    def instances_affected_by_groups(self, group_ids: Sequence[str]) -> list[str]:
        """The live members of these groups and of every group with a rule whose remote
        group is one of them."""
        groups = set(group_ids) | {
            g.id
            for g in self._db.security_groups.values()
            if any(r.remote_group_id in group_ids for r in g.rules)
        }
        return sorted(
            {
                u
                for u, g in self._db.memberships
                if g in groups
                and u in self._db.instances
                and self._db.instances[u].vm_state is not VmState.DELETED
            }
        )

    def address_sets(self, group_ids: Sequence[str]) -> dict[str, AddressSet]:
        return member_addresses(self._db, group_ids)

    def remote_groups_of_projects(self, project_ids: Sequence[str]) -> list[str]:
        groups = self._db.security_groups
        named = {r.remote_group_id for g in groups.values() for r in g.rules if r.remote_group_id}
        return sorted(g for g in named if g in groups and groups[g].project_id in project_ids)

    def hosts_naming_groups(self, group_ids: Sequence[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for uuid, member_of in _live_members(self._db):
            host, group = self._db.instances[uuid].host, self._db.security_groups.get(member_of)
            if host is None or group is None:
                continue
            found[host].update(
                r.remote_group_id
                for r in group.rules
                if r.remote_group_id is not None and r.remote_group_id in group_ids
            )
        return {h: gs for h, gs in found.items() if gs}


def _live_members(db: FakeDatabase) -> list[tuple[str, str]]:
    return [
        (u, g)
        for u, g in db.memberships
        if u in db.instances and db.instances[u].vm_state is not VmState.DELETED
    ]


def member_addresses(db: FakeDatabase, group_ids: Sequence[str]) -> dict[str, AddressSet]:
    found: dict[str, set[IPv4Address]] = {g: set() for g in group_ids}
    for u, g in _live_members(db):
        if g in found:
            found[g].update(p.fixed_ip for p in db.instances[u].ports)
    return {g: AddressSet(g, tuple(sorted(a))) for g, a in found.items()}


class FakeTransaction:
    def __init__(self, db: FakeDatabase) -> None:
        self.instances = FakeInstances(db)
        self.nodes = FakeNodes(db)
        self.allocations = FakeAllocations(db)
        self.actions = FakeActions(db)
        self.catalog = FakeCatalog(db)
        self.server_groups = FakeServerGroups(db)
        self.keypairs = FakeKeypairs(db)
        self.quotas = FakeQuotas(db)
        self.idempotency = FakeIdempotency(db)
        self.networks = FakeNetworks(db)
        self.security_groups = FakeSecurityGroups(db)


class FakeUnitOfWork:
    """Runs work at once on the fake rows; a piece of work that raises leaves them as they
    were (its changes are rolled back). Counts transactions, so that tests can see how many
    round trips a use case makes."""

    def __init__(self, db: FakeDatabase | None = None) -> None:
        self.db = db if db is not None else FakeDatabase()
        self.writes = 0
        self.reads = 0

    async def write(self, work: Callable[[FakeTransaction], T]) -> T:
        self.writes += 1
        before = copy.deepcopy(self.db)
        try:
            return work(FakeTransaction(self.db))
        except BaseException:
            self._restore(before)
            raise

    async def read(
        self, work: Callable[[FakeTransaction], T], *, timeout: float | None = None
    ) -> T:
        self.reads += 1
        return work(FakeTransaction(self.db))

    def _restore(self, before: FakeDatabase) -> None:
        for name in vars(before):
            setattr(self.db, name, getattr(before, name))
