"""Security groups on a real database (SQLite and PostgreSQL): the SecurityGroups use cases,
the groups a create asks for, memberships released with the server, and the rules each
server's ports get (remote groups resolved to member addresses)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from ipaddress import IPv4Network

import pytest
from sqlalchemy import func, select

from services.api.context import RequestContext
from services.api.create import CreateServerCommand, CreateServerResult, CreateServers
from services.api.networks import CreateNetworkCommand, NetworkUseCases
from services.api.security_group_rules import CreateRuleCommand
from services.api.security_groups import CreateGroupCommand, SecurityGroupUseCases
from services.common.db import instances as instance_repo
from services.common.db import security_groups as repo
from services.common.db.engine import Database
from services.common.db.models import (
    INSTANCE_SECURITY_GROUPS,
    SECURITY_GROUP_RULES,
    SECURITY_GROUPS,
)
from services.common.db.stores import SqlUnitOfWork
from services.common.domain import utcnow
from services.common.errors import (
    AlreadyExists,
    DomainError,
    InvalidArgument,
    NotFound,
    WrongState,
)
from services.common.networking import AddressSet, Direction, IpProtocol, SecurityGroupRule
from tests.support.casts import NoCasts

pytestmark = pytest.mark.timeout(120)

UNLIMITED = {"instances": -1, "cores": -1, "ram": -1}
P1 = RequestContext("p1", "req-1")
P2 = RequestContext("p2", "req-2")
ADMIN = RequestContext("admin", "req-3", is_admin=True)


class RecordedChanges:
    """A RulesChanged that remembers what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str]]] = []

    def groups_changed(
        self, group_ids: Sequence[str], *, instance_uuids: Sequence[str] = ()
    ) -> None:
        self.calls.append((list(group_ids), list(instance_uuids)))


@pytest.fixture
async def creates(db: Database) -> AsyncIterator[CreateServers]:
    made = CreateServers(SqlUnitOfWork(db), NoCasts(), quota_defaults=UNLIMITED)
    made.start()
    yield made
    await made.close()


async def server(
    creates: CreateServers, name: str, context: RequestContext = P1, **fields: object
) -> str:
    command = CreateServerCommand(name=name, flavor_ref="m1.tiny", image_ref="nova-tiny",
                                  **fields)  # type: ignore[arg-type]  # fmt: skip
    result: CreateServerResult = await creates(command, context)
    (uuid,) = result.server_ids
    return uuid


def shown_groups(db: Database, uuid: str) -> list[str]:
    with db.begin_read() as connection:
        (instance,) = instance_repo.load_instances(connection, [uuid])
    return list(instance.security_groups)


def count(db: Database, table: object) -> int:
    with db.begin_read() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


async def test_groups_and_the_default_group(db: Database) -> None:
    changes = RecordedChanges()
    groups = SecurityGroupUseCases(SqlUnitOfWork(db), changes)
    # the default group is made on first use, with Neutron's rules
    (default,) = await groups.list_groups(P1)
    assert (default.name, default.project_id) == ("default", "p1")
    assert {(r.direction, r.protocol, r.port_min, r.remote_cidr, r.remote_group_id)
            for r in default.rules} == {
        (Direction.EGRESS, IpProtocol.ANY, None, None, None),
        (Direction.INGRESS, IpProtocol.ANY, None, None, default.id),
    }  # fmt: skip
    web = await groups.create(P1, CreateGroupCommand("web", "front ends"))
    assert (web.description, web.rules) == ("front ends", ())
    assert (await groups.get(P1, "web")).id == web.id
    assert (await groups.get(P1, web.id)).name == "web"
    assert [g.name for g in await groups.list_groups(P1)] == ["default", "web"]
    # private to the project; the other project gets its own default
    with pytest.raises(NotFound):
        await groups.get(P2, web.id)
    assert [g.name for g in await groups.list_groups(P2)] == ["default"]
    assert (await groups.get(ADMIN, web.id)).id == web.id
    with pytest.raises(AlreadyExists, match="name"):
        await groups.create(P1, CreateGroupCommand("web"))
    with pytest.raises(AlreadyExists, match="name"):
        await groups.create(P1, CreateGroupCommand("default"))
    with pytest.raises(InvalidArgument, match="name"):
        await groups.create(P1, CreateGroupCommand(""))


async def test_rules_and_deletes_in_use(db: Database) -> None:
    changes = RecordedChanges()
    groups = SecurityGroupUseCases(SqlUnitOfWork(db), changes)
    default = await groups.get(P1, "default")
    web = await groups.create(P1, CreateGroupCommand("web"))
    http = await groups.create_rule(P1, CreateRuleCommand(
        "web", "ingress", "tcp", 80, 81, remote_ip_prefix="10.0.0.0/8"))  # fmt: skip
    assert (http.port_min, http.port_max, http.remote_cidr) == (80, 81, IPv4Network("10.0.0.0/8"))
    from_default = await groups.create_rule(P1, CreateRuleCommand(
        web.id, "ingress", "icmp", remote_group="default"))  # fmt: skip
    assert from_default.remote_group_id == default.id
    assert changes.calls == [([web.id], []), ([web.id], [])]
    assert [r.id for r in (await groups.get(P1, "web")).rules] == [http.id, from_default.id]
    p2_default = (await groups.list_groups(P2))[0]
    bad: list[tuple[CreateRuleCommand, type[DomainError], str]] = [
        (CreateRuleCommand("web", "ingress", "tcp", 80, 81, remote_ip_prefix="10.0.0.0/8"),
         AlreadyExists, "has this rule already"),
        (CreateRuleCommand("web", "ingress", remote_group=p2_default.id), NotFound,
         "remote_group_id"),  # another project's group
        (CreateRuleCommand("web", "ingress", remote_group="nowhere"), NotFound, "remote_group_id"),
        (CreateRuleCommand("nowhere", "ingress"), NotFound, "security_group_id"),
        (CreateRuleCommand(p2_default.id, "ingress"), NotFound, "security_group_id"),
        (CreateRuleCommand("web", "sideways"), InvalidArgument, "direction"),
        (CreateRuleCommand("web", "ingress", "tcp", 9, 8), InvalidArgument, "port_range_max"),
    ]  # fmt: skip
    for command, error, text in bad:
        with pytest.raises(error) as caught:
            await groups.create_rule(P1, command)
        assert text in caught.value.message, command
    assert len(changes.calls) == 2  # refusals tell nobody

    # deletes: default never; a group that another group's rule names, not until that goes
    with pytest.raises(WrongState, match="default"):
        await groups.delete(P1, "default")
    other = await groups.create(P1, CreateGroupCommand("db"))
    to_web = await groups.create_rule(P1, CreateRuleCommand("db", "ingress", remote_group="web"))
    with pytest.raises(WrongState, match="'db'"):
        await groups.delete(P1, "web")
    with pytest.raises(NotFound):
        await groups.delete_rule(P2, to_web.id)
    await groups.delete_rule(P1, to_web.id)
    assert changes.calls[-1] == ([other.id], [])
    with pytest.raises(NotFound):
        await groups.delete_rule(P1, to_web.id)
    with pytest.raises(NotFound):
        await groups.delete(P2, "web")
    rules_before = count(db, SECURITY_GROUP_RULES)
    await groups.delete(P1, "web")  # its own rules go with it
    assert count(db, SECURITY_GROUP_RULES) == rules_before - 2
    with pytest.raises(NotFound):
        await groups.get(P1, "web")
    # an admin deletes another project's group by id
    await groups.delete(ADMIN, other.id)
    assert [g.name for g in await groups.list_groups(P1)] == ["default"]


async def test_a_create_gets_its_groups_and_a_delete_releases_them(
    db: Database, creates: CreateServers
) -> None:
    groups = SecurityGroupUseCases(SqlUnitOfWork(db), RecordedChanges())
    web = await groups.create(P1, CreateGroupCommand("web"))
    plain = await server(creates, "plain")  # no groups asked: default
    both = await server(creates, "both", security_groups=["default", web.id, "web"])
    assert shown_groups(db, plain) == ["default"]
    assert shown_groups(db, both) == ["default", "web"]  # ids shown as names, once each
    rows_before = count(db, INSTANCE_SECURITY_GROUPS)
    with pytest.raises(NotFound) as unknown:
        await server(creates, "x", security_groups=["web", "nowhere"])
    assert unknown.value.field == "security_groups" and "nowhere" in unknown.value.message
    # another project's group is unknown too
    with pytest.raises(NotFound, match="security_groups"):
        await server(creates, "y", P2, security_groups=[web.id])
    assert count(db, INSTANCE_SECURITY_GROUPS) == rows_before == 3
    with pytest.raises(WrongState, match="1 server"):
        await groups.delete(P1, "web")
    with db.begin() as connection:
        instance_repo.mark_deleted(connection, [both], utcnow())
    assert count(db, INSTANCE_SECURITY_GROUPS) == 1
    await groups.delete(P1, "web")


async def test_add_and_remove_a_servers_group(db: Database, creates: CreateServers) -> None:
    changes = RecordedChanges()
    groups = SecurityGroupUseCases(SqlUnitOfWork(db), changes)
    web = await groups.create(P1, CreateGroupCommand("web"))
    uuid = await server(creates, "s")
    mine_elsewhere = await server(creates, "t", P2)
    with db.begin_read() as connection:
        (before,) = instance_repo.load_instances(connection, [uuid])
    await groups.add_to_server(P1, uuid, "web")
    assert shown_groups(db, uuid) == ["default", "web"]
    with db.begin_read() as connection:
        (after,) = instance_repo.load_instances(connection, [uuid])
    # WatchServers sends rows whose updated_at moved
    assert after.updated_at is not None
    assert after.updated_at > (before.updated_at or before.created_at)
    assert changes.calls == [([web.id], [])]
    with pytest.raises(AlreadyExists, match="security_group"):
        await groups.add_to_server(P1, uuid, web.id)
    default = await groups.get(P1, "default")
    await groups.remove_from_server(P1, uuid, "default")
    assert shown_groups(db, uuid) == ["web"]
    assert changes.calls[-1] == ([default.id], [uuid])
    with pytest.raises(WrongState, match="security_group"):
        await groups.remove_from_server(P1, uuid, "default")
    await groups.remove_from_server(P1, uuid, "web")
    assert shown_groups(db, uuid) == []
    # someone else's server, a server that is gone, a group of another project
    with pytest.raises(NotFound, match="server_id"):
        await groups.add_to_server(P1, mine_elsewhere, "default")
    with pytest.raises(NotFound, match="security_group"):
        await groups.add_to_server(P2, mine_elsewhere, web.id)
    # an admin adds a group of the server's project by name
    await groups.create(P2, CreateGroupCommand("theirs"))
    await groups.add_to_server(ADMIN, mine_elsewhere, "theirs")
    assert shown_groups(db, mine_elsewhere) == ["default", "theirs"]
    with db.begin() as connection:
        instance_repo.mark_deleted(connection, [uuid], utcnow())
    with pytest.raises(NotFound, match="server_id"):
        await groups.add_to_server(P1, uuid, "web")
    assert len(changes.calls) == 4


def addresses_of(db: Database, uuid: str) -> list[IPv4Network]:
    with db.begin_read() as connection:
        (instance,) = instance_repo.load_instances(connection, [uuid])
    return [IPv4Network(p.fixed_ip) for p in instance.ports]


def by_rule(rules: Sequence[SecurityGroupRule]) -> dict[str, SecurityGroupRule]:
    return {r.rule_id: r for r in rules}


async def test_rules_name_remote_groups_whose_sets_hold_the_member_addresses(
    db: Database, creates: CreateServers
) -> None:
    await NetworkUseCases(SqlUnitOfWork(db)).create(P1, CreateNetworkCommand("lan", "10.70.0.0/24"))
    groups = SecurityGroupUseCases(SqlUnitOfWork(db), RecordedChanges())
    web = await groups.create(P1, CreateGroupCommand("web"))
    lonely = await groups.create(P1, CreateGroupCommand("lonely"))
    a = await server(creates, "a", networks=["lan", "lan"])  # two ports
    b = await server(creates, "b", networks=["lan"], security_groups=["default", "web"])
    c = await server(creates, "c", networks=["lan"], security_groups=["web"])
    bare = await server(creates, "bare", networks=["none"])  # a member without ports
    http = await groups.create_rule(P1, CreateRuleCommand(
        "web", "ingress", "tcp", 80, remote_ip_prefix="192.0.2.0/24"))  # fmt: skip
    from_default = await groups.create_rule(P1, CreateRuleCommand(
        "web", "ingress", "tcp", 22, remote_group="default"))  # fmt: skip
    from_lonely = await groups.create_rule(
        P1, CreateRuleCommand("web", "ingress", remote_group="lonely")
    )
    default = await groups.get(P1, "default")
    egress_all, from_members = (
        next(r for r in default.rules if r.direction is Direction.EGRESS),
        next(r for r in default.rules if r.direction is Direction.INGRESS),
    )
    await groups.remove_from_server(P1, c, "web")
    with db.begin() as connection:
        instance_repo.mark_deleted(connection, [bare], utcnow())
    await groups.add_to_server(P1, c, "web")
    members = sorted(addresses_of(db, a) + addresses_of(db, b))
    with db.begin_read() as connection:
        rules = repo.rules_for_instances(connection, [a, b, c, bare, "missing"])
        sets = repo.address_sets(connection, [default.id, lonely.id, web.id])
        loaded = {i.uuid: i for i in instance_repo.load_instances(connection, [a, b, c])}
        affected_by_default = repo.instances_affected_by_groups(connection, [default.id])
        affected_by_web = repo.instances_affected_by_groups(connection, [web.id])
        affected_by_lonely = repo.instances_affected_by_groups(connection, [lonely.id])
    assert set(rules) == {a, b, c, bare, "missing"}
    assert rules[bare] == rules["missing"] == ()
    expected_default = {
        egress_all.id: SecurityGroupRule(egress_all.id, Direction.EGRESS),
        from_members.id: SecurityGroupRule(
            from_members.id, Direction.INGRESS, remote_group_id=default.id
        ),
    }
    expected_web = {
        http.id: SecurityGroupRule(http.id, Direction.INGRESS, IpProtocol.TCP, 80, 80,
                                   remote_cidr=IPv4Network("192.0.2.0/24")),
        from_default.id: SecurityGroupRule(from_default.id, Direction.INGRESS,
                                           IpProtocol.TCP, 22, 22, remote_group_id=default.id),
        # the rule from "lonely", a group without members, names its empty set
        from_lonely.id: SecurityGroupRule(from_lonely.id, Direction.INGRESS,
                                          remote_group_id=lonely.id),
    }  # fmt: skip
    assert by_rule(rules[a]) == expected_default
    assert len(rules[b]) == 5 and by_rule(rules[b]) == expected_default | expected_web
    assert by_rule(rules[c]) == expected_web
    assert len(members) == 3 and all(m.prefixlen == 32 for m in members)
    # a set per group: the address of every port of every live member (a's two, b's one; not
    # the deleted one's, nor of c, which is not in default), and lonely's empty
    assert sets == {
        default.id: AddressSet(default.id, tuple(m.network_address for m in members)),
        lonely.id: AddressSet(lonely.id, ()),
        web.id: AddressSet(web.id, tuple(sorted(m.network_address for m in
                                                addresses_of(db, b) + addresses_of(db, c)))),
    }  # fmt: skip
    # an instance loads with the sets its ports' rules name, each group's set one object
    assert {s.group_id for s in loaded[a].address_sets} == {default.id}
    assert {s.group_id for s in loaded[c].address_sets} == {default.id, lonely.id}
    assert loaded[a].address_sets[0] is next(
        s for s in loaded[c].address_sets if s.group_id == default.id
    )
    # default changes: its members, and web's members (web names default as remote)
    assert affected_by_default == sorted([a, b, c])
    assert affected_by_web == sorted([b, c])
    assert affected_by_lonely == sorted([b, c])


@pytest.mark.postgres
async def test_a_group_deleted_while_servers_join_it_leaves_no_orphan(postgres_url: str) -> None:
    """Creates that ask for a group race its delete from another api process: the share lock
    a create takes on its groups and the delete's exclusive one order them, so either the
    delete waits and is refused (the servers use the group) or the creates find no group."""
    dbs = [Database(postgres_url), Database(postgres_url)]
    creator = CreateServers(
        SqlUnitOfWork(dbs[0]), NoCasts(), quota_defaults=UNLIMITED, batch_servers=4
    )
    creator.start()
    deleter = SecurityGroupUseCases(SqlUnitOfWork(dbs[1]), RecordedChanges())
    try:
        for round_ in range(6):
            name = f"racy-{round_}"
            await deleter.create(P1, CreateGroupCommand(name))
            results = await asyncio.gather(
                *(server(creator, f"s{round_}-{i}", security_groups=[name]) for i in range(8)),
                deleter.delete(P1, name),
                return_exceptions=True,
            )
            deleted = results[-1] is None
            joined = [r for r in results[:-1] if isinstance(r, str)]
            for result in results:
                assert result is None or isinstance(result, (str, NotFound, WrongState)), result
            with dbs[0].begin_read() as connection:
                orphans = connection.execute(
                    select(func.count())
                    .select_from(INSTANCE_SECURITY_GROUPS)
                    .outerjoin(SECURITY_GROUPS,
                               SECURITY_GROUPS.c.id == INSTANCE_SECURITY_GROUPS.c.group_id)
                    .where(SECURITY_GROUPS.c.id.is_(None))
                ).scalar_one()  # fmt: skip
            assert orphans == 0
            assert not (deleted and joined) or all(
                shown_groups(dbs[0], u) == [name] for u in joined
            )
            assert deleted or joined
    finally:
        await creator.close()
        for d in dbs:
            d.close()
