"""Data that doesn't grow forever (issue 16): ``nova-grpc-manage db archive-deleted`` and
``db purge`` on real SQLite and PostgreSQL, with 100,000 deleted rows, checked for exactly
what remains in the live and the shadow tables; and ListServers ``changes_since`` still
showing the deletions the archive's cutoff keeps."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf import timestamp_pb2
from sqlalchemy import Table, func, select, update

from services.cli.manage import archive_deleted, main, parse_when, purge_archived
from services.common.db import placement
from services.common.db.engine import Database
from services.common.db.models import (
    ACTION_EVENTS,
    ACTIONS,
    ALLOCATIONS,
    FAULTS,
    GROUP_MEMBERS,
    INSTANCE_TAGS,
    INSTANCES,
    NODES,
    SHADOWS,
)
from services.common.domain import ComputeNodeReport, utcnow
from services.common.generated.novagrpc.v1 import servers_pb2
from tests.integration.test_pipeline import create, wait_for_compute
from tests.support.stack import running_stack

pytestmark = pytest.mark.timeout(300)

OLD_COHORT = 10_000  # servers deleted 90 days ago, and as many 40 days ago
# each deleted server: its row, an action, an event, a fault and a tag: 5 rows
ROWS_PER_SERVER = 5
LEFTOVER_ALLOCATIONS = 7  # old deleted servers that still (wrongly) hold an allocation
RECENT = 30  # deleted an hour ago: the archive below keeps them
LIVE = 30


@dataclass
class Fleet:
    node_id: int
    ninety_days: list[str]
    forty_days: list[str]
    recent: list[str]
    live: list[str]
    leftover: list[str]
    now: datetime


def server_rows(
    fleet_uuids: list[str], *, state: str, terminated: datetime | None, now: datetime
) -> dict[str, list[dict[str, object]]]:
    rows: dict[str, list[dict[str, object]]] = {
        "instances": [], "actions": [], "events": [], "faults": [], "tags": [],
    }  # fmt: skip
    for server in fleet_uuids:
        changed = terminated or now
        rows["instances"].append({
            "uuid": server, "display_name": f"s-{server[:8]}", "project_id": "demo",
            "flavor_id": "1", "flavor_name": "m1.tiny", "vcpus": 1, "memory_mb": 512,
            "root_gb": 1, "image_id": "img", "reservation_id": "r-1", "vm_state": state,
            "task_state": None, "power_state": 0, "host": "h1", "server_metadata": {},
            "request_id": "req", "created_at": changed - timedelta(days=1),
            "updated_at": changed, "terminated_at": terminated,
        })  # fmt: skip
        rows["actions"].append({
            "instance_uuid": server, "action": "create", "request_id": "req",
            "project_id": "demo", "start_time": changed, "finish_time": changed,
        })  # fmt: skip
        rows["events"].append({
            "instance_uuid": server, "event": "compute_build_and_run", "host": "h1",
            "start_time": changed, "finish_time": changed, "result": "Success",
        })  # fmt: skip
        rows["faults"].append({
            "instance_uuid": server, "code": 500, "message": "boom", "created_at": changed,
        })  # fmt: skip
        rows["tags"].append({"instance_uuid": server, "tag": "web"})
    return rows


def insert_servers(db: Database, rows: dict[str, list[dict[str, object]]]) -> None:
    """Insert as the services do: ids from the database (an event finds its action's)."""
    with db.begin() as connection:
        for key, table in (("instances", INSTANCES), ("actions", ACTIONS), ("faults", FAULTS),
                           ("tags", INSTANCE_TAGS)):  # fmt: skip
            connection.execute(table.insert(), rows[key])
        owners = {r["instance_uuid"] for r in rows["events"]}
        action_of = {
            owner: action_id
            for action_id, owner in connection.execute(
                select(ACTIONS.c.id, ACTIONS.c.instance_uuid)
            )
            if owner in owners
        }
        events = [
            {**{k: v for k, v in e.items() if k != "instance_uuid"},
             "action_id": action_of[e["instance_uuid"]]}
            for e in rows["events"]
        ]  # fmt: skip
        connection.execute(ACTION_EVENTS.insert(), events)


@pytest.fixture
def fleet(database_url: str) -> Iterator[Fleet]:
    """20,000 servers deleted long ago (100,000 rows with what they own), some holding an
    allocation they should have given back, one in a server group; servers deleted an hour
    ago; live servers with allocations."""
    db = Database(database_url)
    now = utcnow()
    with db.begin() as connection:
        report = ComputeNodeReport(
            "h1", "h1", "h1:1", 64, 1 << 20, 1000, "QEMU", "x86_64", "nova", 1.0, 1.0, 1.0
        )
        placement.upsert_compute_node(connection, report, now=now)
        node_id = connection.execute(select(NODES.c.id).where(NODES.c.host == "h1")).scalar_one()
    sizes = (("90", OLD_COHORT), ("40", OLD_COHORT), ("recent", RECENT), ("live", LIVE))
    made = {name: [str(uuid.uuid4()) for _ in range(n)] for name, n in sizes}
    for name, state, terminated in (
        ("90", "deleted", now - timedelta(days=90)),
        ("40", "deleted", now - timedelta(days=40)),
        ("recent", "deleted", now - timedelta(hours=1)),
        ("live", "active", None),
    ):
        insert_servers(db, server_rows(made[name], state=state, terminated=terminated, now=now))
    leftover = made["90"][:LEFTOVER_ALLOCATIONS]
    with db.begin() as connection:
        placement.insert_allocations(
            connection,
            [(node_id, u, _tiny()) for u in [*leftover, *made["live"]]],
            now,
        )
        connection.execute(
            GROUP_MEMBERS.insert(),
            [{"group_uuid": "g1", "instance_uuid": u, "created_at": now}
             for u in (made["90"][-1], made["live"][0])],
        )  # fmt: skip
    db.close()
    yield Fleet(node_id, made["90"], made["40"], made["recent"], made["live"], leftover, now)


def _tiny() -> placement.Resources:
    return placement.Resources(1, 512, 1)


def count(db: Database, table: Table) -> int:
    with db.begin_read() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def uuids_in(db: Database, table: Table, column: str) -> set[str]:
    with db.begin_read() as connection:
        return set(connection.execute(select(table.c[column])).scalars())


def test_archive_then_purge_100k_deleted_rows(database_url: str, fleet: Fleet) -> None:
    db = Database(database_url)
    try:
        old = fleet.ninety_days + fleet.forty_days
        kept = set(fleet.recent + fleet.live)
        assert len(old) * ROWS_PER_SERVER == 100_000

        printed = io.StringIO()
        with redirect_stdout(printed):
            code = main(["--database-url", database_url, "db", "archive-deleted",
                         "--before", "30d", "--batch-size", "1000"])  # fmt: skip
        assert code == 0
        assert f"archived {len(old)} servers deleted before" in printed.getvalue()

        # the live tables hold exactly the servers not deleted before the cutoff, and theirs
        assert uuids_in(db, INSTANCES, "uuid") == kept
        for table in (ACTIONS, FAULTS, INSTANCE_TAGS):
            assert uuids_in(db, table, "instance_uuid") == kept, table.name
        assert count(db, ACTION_EVENTS) == len(kept)
        assert uuids_in(db, ALLOCATIONS, "instance_uuid") == set(fleet.live)
        assert uuids_in(db, GROUP_MEMBERS, "instance_uuid") == {fleet.live[0]}
        # the shadow tables hold everything that left, row for row
        assert uuids_in(db, SHADOWS["instances"], "uuid") == set(old)
        for name in ("instance_actions", "instance_faults", "instance_tags"):
            assert uuids_in(db, SHADOWS[name], "instance_uuid") == set(old), name
        assert count(db, SHADOWS["instance_action_events"]) == len(old)
        assert uuids_in(db, SHADOWS["allocations"], "instance_uuid") == set(fleet.leftover)
        assert uuids_in(db, SHADOWS["server_group_members"], "instance_uuid") == {
            fleet.ninety_days[-1]
        }
        # the leftover allocations went back to their node; the live ones still count
        with db.begin_read() as connection:
            used = placement.node_usage(connection, fleet.node_id)
            stored = connection.execute(
                select(NODES.c.used_instances, NODES.c.used_memory_mb).where(
                    NODES.c.id == fleet.node_id
                )
            ).one()
        assert (used.vcpus, used.memory_mb) == (LIVE, LIVE * 512)
        assert tuple(stored) == (LIVE, LIVE * 512)

        # nothing more to archive: a second run moves nothing
        assert archive_deleted(database_url, before=fleet.now - timedelta(days=30)) == {}

        # purge what was deleted over 60 days ago: the 90-day cohort goes, the 40-day stays
        purged = purge_archived(database_url, before=fleet.now - timedelta(days=60))
        assert purged["instances"] == OLD_COHORT
        assert purged["instance_action_events"] == OLD_COHORT
        assert purged["allocations"] == LEFTOVER_ALLOCATIONS
        assert uuids_in(db, SHADOWS["instances"], "uuid") == set(fleet.forty_days)
        assert uuids_in(db, SHADOWS["instance_faults"], "instance_uuid") == set(fleet.forty_days)
        assert count(db, SHADOWS["instance_action_events"]) == OLD_COHORT
        assert count(db, SHADOWS["server_group_members"]) == 0

        with redirect_stdout(io.StringIO()):
            assert main(["--database-url", database_url, "db", "purge", "--all"]) == 0
        for shadow in SHADOWS.values():
            assert count(db, shadow) == 0, shadow.name
        # and the live rows the cutoff kept were never touched
        assert uuids_in(db, INSTANCES, "uuid") == kept
    finally:
        db.close()


def test_archive_purge_option_deletes_without_keeping_shadows(database_url: str) -> None:
    db = Database(database_url)
    now = utcnow()
    old, recent = [str(uuid.uuid4()) for _ in range(50)], [str(uuid.uuid4()) for _ in range(5)]
    try:
        for servers, age in ((old, timedelta(days=60)), (recent, timedelta(days=1))):
            insert_servers(db, server_rows(servers, state="deleted", terminated=now - age, now=now))
        counts = archive_deleted(
            database_url, before=now - timedelta(days=30), batch_size=20, purge=True
        )
        assert counts["instances"] == counts["instance_action_events"] == len(old)
        assert all(count(db, shadow) == 0 for shadow in SHADOWS.values())
        assert uuids_in(db, INSTANCES, "uuid") == set(recent)
        assert uuids_in(db, INSTANCE_TAGS, "instance_uuid") == set(recent)
        assert count(db, ACTION_EVENTS) == len(recent)
    finally:
        db.close()


def test_archiving_again_after_new_deletions_never_collides(database_url: str) -> None:
    """On SQLite a new row takes max(id) + 1: had the newest row been archived, the next
    server would reuse its id and archiving it would collide in the shadow table."""
    db = Database(database_url)
    now = utcnow()
    try:
        for _round in range(3):
            servers = [str(uuid.uuid4()) for _ in range(3)]
            two_days_ago = now - timedelta(days=2)
            insert_servers(
                db, server_rows(servers, state="deleted", terminated=two_days_ago, now=now)
            )
            archive_deleted(database_url, before=now - timedelta(days=1), batch_size=2)
        archived = count(db, SHADOWS["instances"])
        left = count(db, INSTANCES)
        assert archived + left == 9
        assert left <= 1  # at most the newest, held back on SQLite
    finally:
        db.close()


def test_when_accepts_ages_and_iso_times() -> None:
    now = utcnow()
    assert parse_when("90d", now=now) == now - timedelta(days=90)
    assert parse_when("12h", now=now) == now - timedelta(hours=12)
    assert parse_when("30m", now=now) == now - timedelta(minutes=30)
    assert parse_when("2026-01-02T03:04:05", now=now).isoformat() == "2026-01-02T03:04:05+00:00"
    with pytest.raises(ValueError, match="--before"):
        parse_when("last tuesday", now=now)


async def test_changes_since_shows_recent_deletions_but_not_archived_ones(
    database_url: str, tmp_path: Path
) -> None:
    async with running_stack(database_url, tmp_path) as stack:
        await wait_for_compute(database_url)
        ids: list[str] = []
        # two rounds, so that the newest rows belong to the second (on SQLite the archive
        # holds back the owner of a table's newest row, see archive.py)
        for name in ("first", "second"):
            reply = await stack.servers.CreateServer(create(name, max_count=2), timeout=5)
            await stack.wait_settled(list(reply.server_ids))
            for server_id in reply.server_ids:
                await stack.servers.DeleteServer(
                    servers_pb2.DeleteServerRequest(id=server_id), timeout=5
                )
            for server_id in reply.server_ids:
                await stack.wait_status(server_id, servers_pb2.SERVER_STATUS_DELETED)
            ids.extend(reply.server_ids)
        long_ago, recently = ids[:2], ids[2:]
        db = Database(database_url)
        try:
            with db.begin() as connection:  # as if these had been deleted 60 days ago
                then = utcnow() - timedelta(days=60)
                connection.execute(
                    update(INSTANCES)
                    .where(INSTANCES.c.uuid.in_(long_ago))
                    .values(terminated_at=then, updated_at=then)
                )
            since = timestamp_pb2.Timestamp()
            since.FromDatetime(utcnow() - timedelta(days=90))
            request = servers_pb2.ListServersRequest(changes_since=since)
            listed = await stack.servers.ListServers(request, timeout=5)
            assert {s.id for s in listed.servers} == set(ids)

            counts = archive_deleted(database_url, before=utcnow() - timedelta(days=30))
            assert counts["instances"] == 2
            assert counts["instance_actions"] >= 4  # create and delete of each
            listed = await stack.servers.ListServers(request, timeout=5)
            assert {s.id for s in listed.servers} == set(recently)
            assert {s.status for s in listed.servers} == {servers_pb2.SERVER_STATUS_DELETED}
            assert uuids_in(db, SHADOWS["instances"], "uuid") == set(long_ago)
        finally:
            db.close()
