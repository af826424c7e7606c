"""RetryFilter: a host where this instance's build already failed is not chosen again."""

from __future__ import annotations

from services.common.domain import HostState
from services.conductor.scheduler.request import RequestSpec


class RetryFilter:
    name = "RetryFilter"

    def passes(self, host: HostState, spec: RequestSpec) -> bool:
        return host.host not in spec.ignore_hosts
