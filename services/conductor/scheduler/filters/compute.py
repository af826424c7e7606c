"""ComputeFilter: the compute service is enabled and its heartbeat is fresh."""

from __future__ import annotations

from services.common.domain import HostState
from services.conductor.scheduler.request import RequestSpec


class ComputeFilter:
    name = "ComputeFilter"

    def passes(self, host: HostState, spec: RequestSpec) -> bool:
        return host.enabled and host.is_up
