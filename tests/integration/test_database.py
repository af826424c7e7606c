"""The schema, the seed data and the placement primitives on real SQLite and PostgreSQL."""

from __future__ import annotations

import copy
from datetime import timedelta

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select

from services.common.db import catalog, placement
from services.common.db.engine import Database
from services.common.db.models import ALLOCATIONS, Base
from services.common.domain import ComputeNodeReport, Resources, utcnow


def report(host: str, memory_mb: int = 4096, ratio: float = 1.0) -> ComputeNodeReport:
    return ComputeNodeReport(
        host, host, f"{host}:1", 4, memory_mb, 40, "QEMU", "x86_64", "nova", ratio, ratio, ratio
    )


def test_migrations_create_exactly_the_models(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.writer.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []
    finally:
        db.close()


def test_seed_flavors_and_image_exist(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.begin_read() as connection:
            flavors = {f.name: f for f in catalog.list_flavors(connection)}
            image = catalog.find_image(connection, "nova-tiny")
            by_id = catalog.find_flavor(connection, "1")
    finally:
        db.close()
    assert {"m1.tiny", "m1.small", "m1.medium", "m1.large"} <= set(flavors)
    tiny = flavors["m1.tiny"]
    assert (tiny.vcpus, tiny.memory_mb, tiny.root_gb) == (1, 512, 1)
    assert by_id is not None and by_id.name == "m1.tiny"
    assert image is not None and image.status == "active"


def test_a_claim_against_a_stale_generation_loses(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.begin() as connection:
            placement.upsert_compute_node(connection, report("h1"), now=utcnow())
        with db.begin_read() as connection:
            (seen,) = placement.load_host_states(
                connection, now=utcnow(), service_down_time=timedelta(seconds=60)
            )
        racer = copy.deepcopy(seen)
        tiny = Resources(1, 512, 1)
        with db.begin() as connection:
            assert placement.claim(connection, seen, [("a", tiny)], now=utcnow())
        with db.begin() as connection:
            # Another conductor computed its choice from the same picture: it must lose.
            assert not placement.claim(connection, racer, [("b", tiny)], now=utcnow())
        with db.begin_read() as connection:
            count = connection.execute(select(func.count()).select_from(ALLOCATIONS)).scalar()
            (fresh,) = placement.load_host_states(
                connection, now=utcnow(), service_down_time=timedelta(seconds=60)
            )
        assert count == 1
        assert fresh.used == tiny and fresh.generation == seen.generation
    finally:
        db.close()


def test_one_statement_bumps_only_the_hosts_still_at_the_generation_seen(
    database_url: str,
) -> None:
    db = Database(database_url)
    down = timedelta(seconds=60)
    try:
        with db.begin() as connection:
            for host in ("h1", "h2", "h3"):
                placement.upsert_compute_node(connection, report(host), now=utcnow())
        with db.begin_read() as connection:
            seen = placement.load_host_states(connection, now=utcnow(), service_down_time=down)
        stale = copy.deepcopy(seen)
        with db.begin() as connection:  # another conductor claims h2 first
            assert placement.bump_generation(connection, next(h for h in seen if h.host == "h2"))
        with db.begin() as connection:
            bumped = placement.bump_generations(connection, stale)
        by_host = {h.host: h for h in stale}
        assert bumped == {by_host["h1"].node_id, by_host["h3"].node_id}
        with db.begin_read() as connection:
            states = placement.load_host_states(connection, now=utcnow(), service_down_time=down)
        fresh = {h.host: h.generation for h in states}
        # The winners moved on, in the database and in the states the caller holds; the
        # loser kept the generation the other conductor gave it.
        assert fresh == {"h1": 1, "h2": 1, "h3": 1}
        assert [by_host[h].generation for h in ("h1", "h2", "h3")] == [1, 0, 1]
    finally:
        db.close()


def test_heartbeats_keep_a_node_up_and_capacity_changes_bump_generation(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        with db.begin() as connection:
            node_id = placement.upsert_compute_node(
                connection, report("h1"), now=utcnow() - timedelta(seconds=120)
            )
            (stale,) = placement.load_host_states(
                connection, now=utcnow(), service_down_time=timedelta(seconds=60)
            )
            again = placement.upsert_compute_node(
                connection, report("h1", memory_mb=8192), now=utcnow()
            )
            (fresh,) = placement.load_host_states(
                connection, now=utcnow(), service_down_time=timedelta(seconds=60)
            )
    finally:
        db.close()
    assert again == node_id
    assert not stale.is_up and fresh.is_up
    assert fresh.total.memory_mb == 8192 and fresh.generation == stale.generation + 1
