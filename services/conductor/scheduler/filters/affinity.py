"""ServerGroupAffinityFilter: members of an affinity group share one host. The first member
may go anywhere; later ones only where the group already is."""

from __future__ import annotations

from services.common.domain import GroupPolicy, HostState
from services.conductor.scheduler.request import RequestSpec


class ServerGroupAffinityFilter:
    name = "ServerGroupAffinityFilter"

    def passes(self, host: HostState, spec: RequestSpec) -> bool:
        if spec.group_policy != GroupPolicy.AFFINITY or not spec.group_hosts:
            return True
        return host.host in spec.group_hosts
