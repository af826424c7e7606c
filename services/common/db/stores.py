"""The stores of ``services.common.stores`` on SQLAlchemy, and the unit of work that gives
them one transaction of ``Database`` (whose deadlock retries run the work again whole).

The stores are thin: each method is the query (or the repository function) the use case
ran itself before, so a use case makes exactly the round trips it made then.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv4Network
from typing import TypeVar

from sqlalchemy import ColumnElement, Connection, RowMapping, and_, or_, select

from services.common.db import actions as action_repo
from services.common.db import (
    catalog,
    groups,
    idempotency,
    keypairs,
    placement,
    quotas,
    server_search,
    watch_resume,
)
from services.common.db import instances as instance_repo
from services.common.db import networks as network_repo
from services.common.db import security_groups as security_group_repo
from services.common.db.engine import Database
from services.common.db.models import INSTANCES, NODES
from services.common.db.read_guard import guarded
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
from services.common.pacing import unpaced
from services.common.stores import (
    WATCH_MAX,
    FaultRecord,
    Findings,
    UnfinishedCutoffs,
    WatchScope,
)

T = TypeVar("T")

# The most rows one watch read returns (a snapshot or one poll's changes).


def _changed_before(moment: datetime) -> ColumnElement[bool]:
    return or_(
        INSTANCES.c.updated_at < moment,
        and_(INSTANCES.c.updated_at.is_(None), INSTANCES.c.created_at < moment),
    )


class SqlInstances:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def get(self, uuid: str, *, project_id: str | None) -> Instance | None:
        return instance_repo.get_instance(self._c, uuid, project_id=project_id)

    def load(self, uuids: Sequence[str], *, for_update: bool = False) -> list[Instance]:
        return instance_repo.load_instances(self._c, uuids, for_update=for_update)

    def host_history(self, uuids: Sequence[str]) -> dict[str, frozenset[str]]:
        return instance_repo.host_history(self._c, uuids)

    def unfinished(self, cutoffs: UnfinishedCutoffs) -> Findings:
        """Six indexed queries, one per kind of stuck work (the reconciler's pass)."""
        c = self._c
        grace = cutoffs.now - cutoffs.scheduling_grace
        down = cutoffs.now - cutoffs.service_down_time
        building = INSTANCES.c.vm_state == VmState.BUILDING.value
        unscheduled: dict[str, list[str]] = defaultdict(list)
        rows = c.execute(
            select(INSTANCES.c.uuid, INSTANCES.c.reservation_id).where(
                building,
                INSTANCES.c.task_state == TaskState.SCHEDULING.value,
                INSTANCES.c.host.is_(None),
                _changed_before(grace),
            )
        )
        for uuid, reservation in rows:
            unscheduled[reservation].append(uuid)
        deleting = select(INSTANCES.c.uuid).where(
            INSTANCES.c.task_state == TaskState.DELETING.value,
            INSTANCES.c.vm_state != VmState.DELETED.value,
            _changed_before(grace),
        )
        on_down_hosts = (
            select(INSTANCES.c.uuid, INSTANCES.c.host)
            .join(NODES, NODES.c.host == INSTANCES.c.host)
            .where(
                building,
                instance_repo.NOT_DELETING,
                NODES.c.last_heartbeat_at < down,
                _changed_before(grace),
            )
        )
        timed_out = select(INSTANCES.c.uuid).where(
            building,
            instance_repo.NOT_DELETING,
            INSTANCES.c.created_at < cutoffs.now - cutoffs.instance_build_timeout,
        )
        stuck_power = select(INSTANCES.c.uuid).where(
            INSTANCES.c.task_state.in_(instance_repo.POWER_TASKS),
            _changed_before(cutoffs.now - cutoffs.power_action_timeout),
        )
        unsent = (
            select(INSTANCES.c.uuid)
            .join(NODES, NODES.c.host == INSTANCES.c.host)
            .where(
                building,
                INSTANCES.c.task_state.is_(None),
                NODES.c.last_heartbeat_at >= down,
                _changed_before(grace),
            )
        )
        return Findings(
            unscheduled=dict(unscheduled),
            deleting=[u for (u,) in c.execute(deleting)],
            on_down_hosts=[(u, h) for u, h in c.execute(on_down_hosts)],
            timed_out=[u for (u,) in c.execute(timed_out)],
            stuck_power=[u for (u,) in c.execute(stuck_power)],
            unsent=[u for (u,) in c.execute(unsent)],
        )

    def host_address(self, uuid: str) -> str | None:
        row = self._c.execute(
            select(NODES.c.rpc_address)
            .join(INSTANCES, INSTANCES.c.host == NODES.c.host)
            .where(INSTANCES.c.uuid == uuid)
        ).first()
        return None if row is None else str(row[0])

    def mark_error(self, faults: Sequence[FaultRecord], now: datetime) -> None:
        instance_repo.mark_error(self._c, faults, now)

    def mark_deleted(self, uuids: Sequence[str], now: datetime) -> None:
        instance_repo.mark_deleted(self._c, uuids, now)

    def mark_deleting(self, uuid: str, *, project_id: str | None, now: datetime) -> Instance | None:
        return instance_repo.mark_deleting(self._c, uuid, project_id=project_id, now=now)

    def start_power_action(
        self,
        uuid: str,
        *,
        project_id: str | None,
        allowed: Sequence[VmState],
        task: TaskState,
        now: datetime,
    ) -> Instance | None:
        return instance_repo.start_power_action(
            self._c, uuid, project_id=project_id, allowed=allowed, task=task, now=now
        )

    def settle_power_action(
        self,
        uuids: Sequence[str],
        *,
        vm_state: VmState | None,
        power: PowerState | None,
        now: datetime,
    ) -> None:
        instance_repo.settle_power_action(self._c, uuids, vm_state=vm_state, power=power, now=now)

    def watched(
        self,
        scopes: Sequence[WatchScope],
        *,
        since: datetime | None,
        checkpoint: Callable[[], None] | None = None,
    ) -> list[Instance]:
        """One query for every scope; read and decoded a slice at a time, ``checkpoint``
        between slices (a snapshot of 1,000 servers is as large a read as a page of
        ListServers, and is paced the same way)."""
        conditions = []
        for scope in scopes:
            if scope.server_id:
                condition = INSTANCES.c.uuid == scope.server_id
            elif scope.reservation_id:
                condition = INSTANCES.c.reservation_id == scope.reservation_id
            elif since is None:  # a project's snapshot: its live servers
                condition = INSTANCES.c.vm_state != VmState.DELETED.value
            else:  # a project's changes, deletes included
                condition = INSTANCES.c.id.is_not(None)
            if scope.project_id is not None:
                condition = and_(condition, INSTANCES.c.project_id == scope.project_id)
            conditions.append(condition)
        if not conditions:
            return []
        query = select(INSTANCES).where(or_(*conditions))
        if since is not None:
            query = query.where(
                or_(
                    INSTANCES.c.updated_at >= since,
                    and_(INSTANCES.c.updated_at.is_(None), INSTANCES.c.created_at >= since),
                )
            )
        query = query.order_by(INSTANCES.c.created_at).limit(WATCH_MAX)
        pace = guarded(self._c, checkpoint or unpaced)
        rows: list[RowMapping] = []
        for part in self._c.execute(query).partitions(server_search.PACE_ROWS):
            rows.extend(r._mapping for r in part)
            pace()
        found: list[Instance] = []
        for start in range(0, len(rows), server_search.DETAIL_ROWS):
            found += instance_repo.with_details(
                self._c, rows[start : start + server_search.DETAIL_ROWS]
            )
            pace()
        return found

    def archived_since(self, scope: WatchScope, *, since: datetime) -> bool:
        return watch_resume.archived_since(
            self._c, since=since, project_id=scope.project_id,
            server_id=scope.server_id, reservation_id=scope.reservation_id,
        )  # fmt: skip

    def live_uuids(self, uuids: Sequence[str], *, project_id: str | None) -> set[str]:
        if not uuids:
            return set()
        query = select(INSTANCES.c.uuid).where(
            INSTANCES.c.uuid.in_(list(uuids)), INSTANCES.c.vm_state != VmState.DELETED.value
        )
        if project_id is not None:
            query = query.where(INSTANCES.c.project_id == project_id)
        return {u for (u,) in self._c.execute(query)}

    def insert(self, instances: Sequence[Instance]) -> None:
        instance_repo.insert_instances(self._c, instances)

    def projects_of(self, uuids: Sequence[str]) -> set[str]:
        query = select(INSTANCES.c.project_id).where(INSTANCES.c.uuid.in_(sorted(uuids)))
        return {p for (p,) in self._c.execute(query)}

    def placed_in_projects(self, project_ids: Sequence[str]) -> set[str]:
        query = select(INSTANCES.c.uuid).where(
            INSTANCES.c.project_id.in_(sorted(project_ids)),
            INSTANCES.c.vm_state != VmState.DELETED.value,
            INSTANCES.c.host.is_not(None),
        )
        return {u for (u,) in self._c.execute(query)}

    def on_hypervisors_other_than(self, uuids: Sequence[str], hypervisor_type: str) -> set[str]:
        query = (
            select(INSTANCES.c.uuid)
            .join(NODES, NODES.c.host == INSTANCES.c.host)
            .where(INSTANCES.c.uuid.in_(sorted(uuids)), NODES.c.hypervisor_type != hypervisor_type)
        )
        return {u for (u,) in self._c.execute(query)}

    def on_host(self, host: str) -> list[HostInstance]:
        return instance_repo.host_instances(self._c, host)

    def count_by_state(self) -> dict[str, int]:
        return instance_repo.count_by_state(self._c)

    def oldest_building(self) -> datetime | None:
        return instance_repo.oldest_building(self._c)


class SqlNodes:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def rpc_addresses(self, hosts: Sequence[str]) -> dict[str, str]:
        rows = self._c.execute(
            select(NODES.c.host, NODES.c.rpc_address).where(NODES.c.host.in_(list(hosts)))
        )
        return {host: address for host, address in rows}

    def zones(self) -> set[str]:
        return {z for (z,) in self._c.execute(select(NODES.c.availability_zone).distinct())}

    def host_exists(self, host: str) -> bool:
        found = self._c.execute(select(NODES.c.host).where(NODES.c.host == host)).first()
        return found is not None

    def upsert(self, report: ComputeNodeReport, now: datetime) -> int:
        return placement.upsert_compute_node(self._c, report, now=now)

    def views(self, *, now: datetime, service_down_time: timedelta) -> list[placement.NodeView]:
        return placement.list_nodes(self._c, now=now, service_down_time=service_down_time)

    def set_status(self, host: str, *, enabled: bool, reason: str | None, now: datetime) -> bool:
        return placement.set_node_status(self._c, host, enabled=enabled, reason=reason, now=now)

    def hypervisors(self, hosts: Sequence[str]) -> dict[str, tuple[str, str]]:
        query = select(NODES.c.host, NODES.c.rpc_address, NODES.c.hypervisor_type).where(
            NODES.c.host.in_(sorted(hosts))
        )
        return {host: (address, kind) for host, address, kind in self._c.execute(query)}

    def host_states(self, *, now: datetime, service_down_time: timedelta) -> list[HostState]:
        return placement.load_host_states(self._c, now=now, service_down_time=service_down_time)


class SqlAllocations:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def free(self, uuids: Sequence[str]) -> int:
        return placement.free_allocations(self._c, uuids)


class SqlActions:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def start(self, actions: Sequence[action_repo.NewAction], now: datetime) -> None:
        action_repo.start_actions(self._c, actions, now)

    def finish(
        self, uuids: Sequence[str], action: ActionName, now: datetime, *, message: str | None = None
    ) -> None:
        action_repo.finish_actions(self._c, uuids, action, now=now, message=message)

    def list_actions(self, instance_uuid: str) -> list[action_repo.Action]:
        return action_repo.list_actions(self._c, instance_uuid)


class SqlServerSearch:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def search(
        self,
        filters: server_search.ServerFilter,
        *,
        limit: int,
        after: server_search.Cursor | None = None,
        checkpoint: Callable[[], None],
    ) -> tuple[list[Instance], server_search.Cursor | None]:
        return server_search.search(
            self._c, filters, limit=limit, after=after, checkpoint=checkpoint
        )


class SqlCatalog:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def find_flavor(self, ref: str) -> Flavor | None:
        return catalog.find_flavor(self._c, ref)

    def find_image(self, ref: str, *, field: str = "image_ref") -> Image | None:
        return catalog.find_image(self._c, ref, field=field)

    def list_flavors(self) -> list[Flavor]:
        return catalog.list_flavors(self._c)

    def flavor_taken(self, flavor_id: str, name: str) -> str | None:
        return catalog.flavor_taken(self._c, flavor_id, name)

    def create_flavor(self, flavor: Flavor, now: datetime) -> None:
        catalog.create_flavor(self._c, flavor, now)

    def delete_flavor(self, flavor_id: str) -> bool:
        return catalog.delete_flavor(self._c, flavor_id)

    def add_image(self, image: Image, now: datetime) -> None:
        catalog.add_image(self._c, image, now)

    def list_images(self) -> list[Image]:
        return catalog.list_images(self._c)

    def retire_images(self, image_ids: list[str]) -> None:
        catalog.retire_images(self._c, image_ids)


class SqlServerGroups:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def exists(self, group_uuid: str, *, project_id: str | None) -> bool:
        return bool(groups.get_groups(self._c, [group_uuid], project_id=project_id))

    def add_members(self, group_uuid: str, instance_uuids: Sequence[str], now: datetime) -> None:
        groups.add_members(self._c, group_uuid, instance_uuids, now=now)

    def create(
        self, *, name: str, project_id: str, policy: GroupPolicy, now: datetime
    ) -> groups.ServerGroup:
        return groups.create_group(self._c, name=name, project_id=project_id, policy=policy,
                                   now=now)  # fmt: skip

    def get(
        self, group_uuids: Sequence[str], *, project_id: str | None
    ) -> dict[str, groups.ServerGroup]:
        return groups.get_groups(self._c, group_uuids, project_id=project_id)

    def list_groups(self, *, project_id: str | None) -> list[groups.ServerGroup]:
        return groups.list_groups(self._c, project_id=project_id)

    def delete(self, group_uuid: str) -> None:
        groups.delete_group(self._c, group_uuid)


class SqlKeypairs:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def public_key(self, *, project_id: str, name: str) -> str | None:
        found = keypairs.get(self._c, project_id=project_id, name=name)
        return None if found is None else found.public_key

    def get(self, *, project_id: str, name: str) -> keypairs.Keypair | None:
        return keypairs.get(self._c, project_id=project_id, name=name)

    def add(
        self, *, project_id: str, name: str, public_key: str, now: datetime
    ) -> keypairs.Keypair:
        return keypairs.add(self._c, project_id=project_id, name=name, public_key=public_key,
                            now=now)  # fmt: skip

    def list_keypairs(self, *, project_id: str) -> list[keypairs.Keypair]:
        return keypairs.list_keypairs(self._c, project_id=project_id)

    def remove(self, *, project_id: str, name: str) -> bool:
        return keypairs.remove(self._c, project_id=project_id, name=name)


class SqlQuotas:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def limits(self, project_id: str, defaults: dict[str, int]) -> dict[str, int]:
        return quotas.limits(self._c, project_id, defaults)

    def usage(self, project_id: str) -> quotas.Usage:
        return quotas.usage(self._c, project_id)

    def set_limits(self, project_id: str, new: dict[str, int]) -> None:
        quotas.set_limits(self._c, project_id, new)


class SqlIdempotency:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def find(
        self, project_id: str, client_request_id: str, *, since: datetime
    ) -> idempotency.KeyedCreate | None:
        return idempotency.find(self._c, project_id, client_request_id, since=since)

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
        return idempotency.claim(
            self._c, project_id, client_request_id, reservation_id=reservation_id,
            server_ids=server_ids, now=now, expired_before=expired_before,
        )  # fmt: skip


class SqlNetworks:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def default_network(self, project_id: str) -> Network | None:
        return network_repo.default_network(self._c, project_id)

    def find(self, ref: str, *, project_id: str | None) -> list[Network]:
        return network_repo.find_networks(self._c, ref, project_id=project_id)

    def project_cidrs(self, project_id: str) -> list[tuple[str, IPv4Network]]:
        return network_repo.project_cidrs(self._c, project_id)

    def list_networks(self, *, project_id: str | None) -> list[Network]:
        return network_repo.list_networks(self._c, project_id=project_id)

    def ports_on(self, network_id: str) -> int:
        return network_repo.ports_on(self._c, network_id)

    def delete(self, network_id: str) -> bool:
        return network_repo.delete_network(self._c, network_id)

    def create(self, new: network_repo.NewNetwork, now: datetime) -> Network | None:
        return network_repo.create_network(self._c, new, now)

    def lock(self, network_ids: Sequence[str]) -> None:
        network_repo.lock_networks(self._c, network_ids)

    def addresses_in_use(
        self, network_id: str, addresses: Sequence[IPv4Address]
    ) -> set[IPv4Address]:
        return network_repo.addresses_in_use(self._c, network_id, addresses)

    def macs_in_use(self, macs: Sequence[str]) -> set[str]:
        return network_repo.macs_in_use(self._c, macs)

    def insert_ports(self, ports: Sequence[network_repo.NewPort], now: datetime) -> None:
        network_repo.insert_ports(self._c, ports, now)

    def usage_per_network(self) -> list[tuple[Network, int]]:
        return network_repo.usage_per_network(self._c)


class SqlSecurityGroups:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def ensure_default(self, project_id: str, now: datetime) -> security_group_repo.SecurityGroup:
        return security_group_repo.ensure_default(self._c, project_id, now)

    def find(
        self, ref: str, *, project_id: str | None, lock: bool = False
    ) -> list[security_group_repo.SecurityGroup]:
        return security_group_repo.find_groups(self._c, ref, project_id=project_id, lock=lock)

    def add_memberships(self, pairs: Iterable[tuple[str, str]]) -> None:
        security_group_repo.add_memberships(self._c, pairs)

    def create(
        self, *, project_id: str, name: str, description: str, now: datetime
    ) -> security_group_repo.SecurityGroup | None:
        return security_group_repo.create_group(
            self._c, project_id=project_id, name=name, description=description, now=now
        )

    def get_group(self, group_id: str) -> security_group_repo.SecurityGroup | None:
        return security_group_repo.get_group(self._c, group_id)

    def list_groups(self, *, project_id: str | None) -> list[security_group_repo.SecurityGroup]:
        return security_group_repo.list_groups(self._c, project_id=project_id)

    def lock_for_delete(self, group_id: str) -> bool:
        return security_group_repo.lock_for_delete(self._c, group_id)

    def servers_using(self, group_id: str) -> int:
        return security_group_repo.servers_using(self._c, group_id)

    def groups_referring_to(self, group_id: str) -> list[str]:
        return security_group_repo.groups_referring_to(self._c, group_id)

    def delete(self, group_id: str) -> None:
        security_group_repo.delete_group(self._c, group_id)

    def same_rule(self, new: security_group_repo.NewRule) -> security_group_repo.GroupRule | None:
        return security_group_repo.same_rule(self._c, new)

    def insert_rule(
        self, new: security_group_repo.NewRule, now: datetime
    ) -> security_group_repo.GroupRule:
        return security_group_repo.insert_rule(self._c, new, now)

    def get_rule(self, rule_id: str) -> security_group_repo.GroupRule | None:
        return security_group_repo.get_rule(self._c, rule_id)

    def delete_rule(self, rule_id: str) -> bool:
        return security_group_repo.delete_rule(self._c, rule_id)

    def lock_server(self, server_id: str, *, project_id: str | None) -> str | None:
        query = select(INSTANCES.c.project_id).where(
            INSTANCES.c.uuid == server_id, INSTANCES.c.vm_state != VmState.DELETED.value
        )
        if project_id is not None:
            query = query.where(INSTANCES.c.project_id == project_id)
        row = self._c.execute(query.with_for_update()).first()
        return None if row is None else str(row.project_id)

    def group_ids_of(self, instance_uuid: str) -> list[str]:
        return security_group_repo.group_ids_of(self._c, instance_uuid)

    def remove_membership(self, instance_uuid: str, group_id: str) -> bool:
        return security_group_repo.remove_membership(self._c, instance_uuid, group_id)

    def set_shown_names(self, instance_uuid: str, now: datetime) -> None:
        security_group_repo.set_shown_names(self._c, instance_uuid, now)

    def instances_affected_by_groups(self, group_ids: Sequence[str]) -> list[str]:
        return security_group_repo.instances_affected_by_groups(self._c, group_ids)

    def address_sets(self, group_ids: Sequence[str]) -> dict[str, AddressSet]:
        return security_group_repo.address_sets(self._c, group_ids)

    def remote_groups_of_projects(self, project_ids: Sequence[str]) -> list[str]:
        return security_group_repo.remote_groups_of_projects(self._c, project_ids)

    def hosts_naming_groups(self, group_ids: Sequence[str]) -> dict[str, set[str]]:
        return security_group_repo.hosts_naming_groups(self._c, group_ids)


class SqlTransaction:
    """Every store, on one connection (one transaction). Building it runs no query."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.instances = SqlInstances(connection)
        self.nodes = SqlNodes(connection)
        self.allocations = SqlAllocations(connection)
        self.actions = SqlActions(connection)
        self.server_search = SqlServerSearch(connection)
        self.catalog = SqlCatalog(connection)
        self.server_groups = SqlServerGroups(connection)
        self.keypairs = SqlKeypairs(connection)
        self.quotas = SqlQuotas(connection)
        self.idempotency = SqlIdempotency(connection)
        self.networks = SqlNetworks(connection)
        self.security_groups = SqlSecurityGroups(connection)


class SqlUnitOfWork:
    """``UnitOfWork[SqlTransaction]`` on a ``Database``: its thread pools, its SQLite writer
    queue, its read time limits and its deadlock retries (``work`` runs again from the start
    on a fresh transaction)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def write(self, work: Callable[[SqlTransaction], T]) -> T:
        return await self.db.write(lambda connection: work(SqlTransaction(connection)))

    async def read(self, work: Callable[[SqlTransaction], T], *, timeout: float | None = None) -> T:
        return await self.db.read(
            lambda connection: work(SqlTransaction(connection)), timeout=timeout
        )
