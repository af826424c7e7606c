"""Each compute node row carries the sum of its allocations: every claim and free keeps it,
and the migration that added it adds up what was there. Real SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, func, select, text

from services.common.db import placement
from services.common.db.engine import Database, normalise_url
from services.common.db.migrate import upgrade
from services.common.db.models import ALLOCATIONS, NODES
from services.common.domain import ComputeNodeReport, Resources, utcnow
from tests.support import postgres

pytestmark = pytest.mark.timeout(60)
DOWN = timedelta(seconds=60)


def report(host: str) -> ComputeNodeReport:
    return ComputeNodeReport(host, host, f"{host}:1", 64, 262144, 4000, "QEMU", "x86_64",
                             "nova", 1.0, 1.0, 1.0)  # fmt: skip


def summed(connection: Connection) -> dict[int, tuple[int, int, int, int]]:
    """What the allocations add up to, per node (every node, zero when it holds none)."""
    rows = connection.execute(
        select(
            NODES.c.id,
            func.coalesce(func.sum(ALLOCATIONS.c.vcpus), 0),
            func.coalesce(func.sum(ALLOCATIONS.c.memory_mb), 0),
            func.coalesce(func.sum(ALLOCATIONS.c.disk_gb), 0),
            func.count(ALLOCATIONS.c.id),
        )
        .outerjoin(ALLOCATIONS, ALLOCATIONS.c.compute_node_id == NODES.c.id)
        .group_by(NODES.c.id)
    )
    return {node: (int(v), int(m), int(d), int(n)) for node, v, m, d, n in rows}


def recorded(connection: Connection) -> dict[int, tuple[int, int, int, int]]:
    rows = connection.execute(
        select(
            NODES.c.id,
            NODES.c.used_vcpus,
            NODES.c.used_memory_mb,
            NODES.c.used_disk_gb,
            NODES.c.used_instances,
        )
    )
    return {node: (v, m, d, n) for node, v, m, d, n in rows}


def test_claims_and_frees_keep_each_nodes_usage(db: Database) -> None:
    rng = random.Random(8)
    with db.begin() as connection:
        for host in ("h1", "h2", "h3"):
            placement.upsert_compute_node(connection, report(host), now=utcnow())
    held: list[str] = []
    for step in range(40):
        with db.begin() as connection:
            hosts = placement.load_host_states(connection, now=utcnow(), service_down_time=DOWN)
            if held and rng.random() < 0.4:
                gone = rng.sample(held, rng.randint(1, len(held)))
                # a uuid that holds nothing is freed too: it must change nothing
                assert placement.free_allocations(connection, [*gone, "never-claimed"]) == len(gone)
                held = [u for u in held if u not in gone]
            else:
                host = rng.choice(hosts)
                wanted = [(f"i{step}-{n}", Resources(rng.randint(1, 8), rng.choice([512, 2048]),
                                                     rng.randint(1, 20)))
                          for n in range(rng.randint(1, 4))]  # fmt: skip
                assert placement.claim(connection, host, wanted, now=utcnow())
                held += [u for u, _ in wanted]
        with db.begin_read() as connection:
            assert recorded(connection) == summed(connection), f"after step {step}"
    with db.begin_read() as connection:
        states = placement.load_host_states(connection, now=utcnow(), service_down_time=DOWN)
        totals = summed(connection)
    for state in states:
        v, m, d, n = totals[state.node_id]
        assert (state.used, state.instance_count) == (Resources(v, m, d), n)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_the_migration_adds_up_the_allocations_already_there(backend: str, tmp_path: Path) -> None:
    url = (
        f"sqlite:///{tmp_path / 'old.sqlite'}"
        if backend == "sqlite"
        else postgres.create_database()
    )
    try:
        upgrade(url, "0004")
        engine = create_engine(normalise_url(url))
        now = utcnow()
        with engine.begin() as connection:
            for host in ("h1", "h2"):
                connection.execute(
                    text(
                        "INSERT INTO compute_nodes (host, hypervisor_hostname, rpc_address, "
                        "hypervisor_type, cpu_arch, vcpus, memory_mb, local_gb, "
                        "cpu_allocation_ratio, ram_allocation_ratio, disk_allocation_ratio, "
                        "availability_zone, enabled, generation, failed_builds, "
                        "last_heartbeat_at, created_at, updated_at) VALUES (:h, :h, 'a', "
                        "'QEMU', 'x86_64', 8, 8192, 80, 1, 1, 1, 'nova', :t, 0, 0, :now, :now, "
                        ":now)"
                    ),
                    {"h": host, "t": True, "now": now},
                )
            node = connection.execute(text("SELECT id FROM compute_nodes WHERE host='h1'")).scalar()
            for i, (vcpus, memory) in enumerate([(1, 512), (2, 2048)]):
                connection.execute(
                    text(
                        "INSERT INTO allocations (instance_uuid, compute_node_id, vcpus, "
                        "memory_mb, disk_gb, created_at) VALUES (:u, :n, :v, :m, 5, :now)"
                    ),
                    {"u": f"i{i}", "n": node, "v": vcpus, "m": memory, "now": now},
                )
        engine.dispose()
        upgrade(url)
        db = Database(url)
        try:
            with db.begin_read() as connection:
                assert recorded(connection) == summed(connection)
                assert sorted(recorded(connection).values()) == [(0, 0, 0, 0), (3, 2560, 10, 2)]
        finally:
            db.close()
    finally:
        if backend == "postgresql":
            postgres.drop_database(url)
