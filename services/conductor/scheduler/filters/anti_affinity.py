"""ServerGroupAntiAffinityFilter: no two members of an anti-affinity group on one host."""

from __future__ import annotations

from services.common.domain import GroupPolicy, HostState
from services.conductor.scheduler.request import RequestSpec


class ServerGroupAntiAffinityFilter:
    name = "ServerGroupAntiAffinityFilter"

    def passes(self, host: HostState, spec: RequestSpec) -> bool:
        if spec.group_policy != GroupPolicy.ANTI_AFFINITY:
            return True
        return host.host not in spec.group_hosts
