"""CapacityFilter: free vCPU, RAM and disk (after allocation ratios) cover the flavor."""

from __future__ import annotations

from services.common.domain import HostState
from services.conductor.scheduler.request import RequestSpec


class CapacityFilter:
    name = "CapacityFilter"

    def passes(self, host: HostState, spec: RequestSpec) -> bool:
        return host.fits(spec.resources)
