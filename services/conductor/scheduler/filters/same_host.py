"""SameHostFilter: with the ``same_host`` hint, only the hosts of the named instances."""

from __future__ import annotations

from services.common.domain import HostState
from services.conductor.scheduler.request import RequestSpec


class SameHostFilter:
    name = "SameHostFilter"

    def passes(self, host: HostState, spec: RequestSpec) -> bool:
        return spec.same_host_hosts is None or host.host in spec.same_host_hosts
