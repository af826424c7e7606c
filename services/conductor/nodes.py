"""Compute node registration and heartbeats."""

from __future__ import annotations

from services.common.db import placement
from services.common.db.engine import Database
from services.common.domain import ComputeNodeReport, utcnow


class ComputeNodes:
    def __init__(self, db: Database, ratios: placement.AllocationRatios) -> None:
        self._db = db
        self._ratios = ratios

    async def report(self, report: ComputeNodeReport) -> int:
        return await self._db.write(
            lambda c: placement.upsert_compute_node(c, report, ratios=self._ratios, now=utcnow())
        )
