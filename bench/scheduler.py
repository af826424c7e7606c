"""Placements per second: the conductor's real scheduling pass (bulk host-state load, filters,
weighers, generation-checked claims, recording hosts and actions) on a database holding 1,000
to 10,000 compute nodes. No RPC: the builds the pass produces are not sent anywhere."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from services.common.db import actions, placement
from services.common.db import instances as instance_repo
from services.common.db.build_store import SqlBuildTransactions
from services.common.db.engine import Database
from services.common.db.migrate import upgrade
from services.common.domain import (
    ComputeNodeReport,
    Flavor,
    Instance,
    PowerState,
    TaskState,
    VmState,
    utcnow,
)
from services.common.request_spec import StoredSpec
from services.conductor.build_task import BuildTask
from services.conductor.scheduler.registry import (
    DEFAULT_FILTERS,
    DEFAULT_WEIGHTS,
    build_filters,
    build_weighers,
    parse_weights,
)
from services.conductor.scheduler.scheduler import Scheduler

TINY = Flavor("1", "m1.tiny", 1, 512, 1)
SEED_IMAGE = "5e0c0f1c-7a7e-4c51-9b0e-6e6f76612d31"


class _NoCompute:
    async def build_and_run(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("the benchmark never dispatches")


def _seed(db: Database, hosts: int, instances: int) -> list[str]:
    now = utcnow()
    with db.begin() as connection:
        for i in range(hosts):
            placement.upsert_compute_node(
                connection,
                ComputeNodeReport(f"node-{i:05d}", f"node-{i:05d}", f"127.0.0.1:{i}", 64,
                                  262144, 10000, "test", "x86_64", "nova", 16.0, 1.5, 1.0),
                now=now,
            )  # fmt: skip
        rows = [
            Instance(
                uuid=str(uuid.uuid4()),
                id=None,
                display_name=f"b{i}",
                project_id="bench",
                flavor=TINY,
                image_id=SEED_IMAGE,
                reservation_id=f"r-{i}",
                vm_state=VmState.BUILDING,
                task_state=TaskState.SCHEDULING,
                power_state=PowerState.NOSTATE,
                host=None,
                node=None,
                metadata={},
                created_at=now,
                request_spec=StoredSpec(),
            )
            for i in range(instances)
        ]  # fmt: skip
        instance_repo.insert_instances(connection, rows)
        actions.start_actions(
            connection,
            [actions.NewAction(r.uuid, actions.CREATE, "bench", "bench") for r in rows],
            now,
        )
    return [r.uuid for r in rows]


async def _measure(url: str, hosts: int, instances: int, batch: int) -> dict[str, Any]:
    db = Database(url)
    try:
        uuids = await asyncio.to_thread(_seed, db, hosts, instances)
        scheduler = Scheduler(
            build_filters(DEFAULT_FILTERS), build_weighers(parse_weights(DEFAULT_WEIGHTS))
        )
        task = BuildTask(SqlBuildTransactions(db), _NoCompute(), scheduler,  # type: ignore[arg-type]
                         service_down_time=timedelta(seconds=60))  # fmt: skip
        placed = 0
        started = time.perf_counter()
        for i in range(0, len(uuids), batch):
            chunk = {u: "bench" for u in uuids[i : i + batch]}
            plan = await task.place(chunk)
            placed += len(plan.placements)
        elapsed = time.perf_counter() - started
    finally:
        db.close()
    return {
        "figure": f"placements/s at {hosts:,} hosts",
        "value": placed / elapsed,
        "unit": "placements/s",
        "conditions": f"{instances} m1.tiny in batches of {batch}, all default filters and "
        f"weighers, claims in {'SQLite' if url.startswith('sqlite') else 'PostgreSQL'}; "
        f"{placed} placed",
    }


def run_scheduler(
    workdir: Path,
    *,
    hosts: tuple[int, ...] = (1000, 5000, 10000),
    instances: int = 2000,
    batch: int = 500,
    url: str = "",
) -> list[dict[str, Any]]:
    results = []
    for count in hosts:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        database = url or f"sqlite:///{workdir / 'nova.sqlite'}"
        upgrade(database)
        results.append(asyncio.run(_measure(database, count, instances, batch)))
    return results
