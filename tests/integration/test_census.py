"""The conductor's gauges read from the database, which the alerts and the dashboard use:
instances by state, the age of the oldest build, compute nodes up, down and disabled."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from services.common.db import placement
from services.common.db.engine import Database
from services.common.db.stores import SqlUnitOfWork
from services.common.domain import ComputeNodeReport, utcnow
from services.conductor.metrics import ConductorMetrics
from services.conductor.reconciler import InstanceCensus
from tests.integration.test_archive import insert_servers, server_rows

pytestmark = pytest.mark.timeout(60)


def report(host: str) -> ComputeNodeReport:
    return ComputeNodeReport(
        host, host, f"{host}:1", 4, 4096, 40, "QEMU", "x86_64", "nova", 1.0, 1.0, 1.0
    )


async def test_census_counts_states_oldest_build_and_nodes(db: Database) -> None:
    now = utcnow()
    with db.begin() as connection:
        for host in ("up-1", "up-2", "disabled-1"):
            placement.upsert_compute_node(connection, report(host), now=now)
        placement.upsert_compute_node(connection, report("down-1"), now=now - timedelta(hours=1))
        placement.set_node_status(connection, "disabled-1", enabled=False, reason="m", now=now)
    building = server_rows([str(uuid.uuid4())], state="building", terminated=None, now=now)
    building["instances"][0]["created_at"] = now - timedelta(minutes=20)
    insert_servers(db, building)
    newer = server_rows([str(uuid.uuid4())], state="building", terminated=None, now=now)
    newer["instances"][0]["created_at"] = now - timedelta(minutes=1)
    insert_servers(db, newer)
    insert_servers(db, server_rows([str(uuid.uuid4())], state="active", terminated=None, now=now))

    registry = CollectorRegistry()
    census = InstanceCensus(SqlUnitOfWork(db), ConductorMetrics.create(registry),
                            service_down_time=timedelta(seconds=60))  # fmt: skip
    await census.count_once()

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("nova_grpc_instances", vm_state="building") == 2
    assert value("nova_grpc_instances", vm_state="active") == 1
    age = value("nova_grpc_oldest_build_age_seconds")
    assert age is not None and 20 * 60 <= age < 20 * 60 + 30
    nodes = {s: value("nova_grpc_compute_nodes", state=s) for s in ("up", "down", "disabled")}
    assert nodes == {"up": 2, "down": 1, "disabled": 1}

    # once nothing builds, the age says so
    with db.begin() as connection:
        connection.exec_driver_sql("UPDATE instances SET vm_state = 'active'")
    await census.count_once()
    assert value("nova_grpc_oldest_build_age_seconds") == 0
