"""DiskWeigher: more free disk (after overcommit) scores higher."""

from __future__ import annotations

from services.common.domain import HostState
from services.conductor.scheduler.request import RequestSpec


class DiskWeigher:
    name = "DiskWeigher"

    # Consumption within a batch changes the score.
    uses_consumption = True

    def __init__(self, multiplier: float = 1.0) -> None:
        self.multiplier = multiplier

    def raw(self, host: HostState, spec: RequestSpec) -> float:
        return float(host.free.disk_gb)
