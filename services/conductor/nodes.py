"""Compute node registration and heartbeats."""

from __future__ import annotations

from services.common.db import instances as instance_repo
from services.common.db import placement
from services.common.db.engine import Database
from services.common.domain import ComputeNodeReport, HostInstance, utcnow


class ComputeNodes:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def report(self, report: ComputeNodeReport) -> int:
        return await self._db.write(
            lambda c: placement.upsert_compute_node(c, report, now=utcnow())
        )

    async def host_instances(self, host: str) -> list[HostInstance]:
        return await self._db.read(lambda c: instance_repo.host_instances(c, host))
