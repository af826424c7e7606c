"""ServerGroupSoftAntiAffinityWeigher: prefer hosts with fewer members of a soft-anti-affinity
group."""

from __future__ import annotations

from services.common.domain import GroupPolicy, HostState
from services.conductor.scheduler.request import RequestSpec


class ServerGroupSoftAntiAffinityWeigher:
    name = "ServerGroupSoftAntiAffinityWeigher"

    # Nothing a batch consumes changes the score (only the database or the group does).
    uses_consumption = False

    def __init__(self, multiplier: float = 1.0) -> None:
        self.multiplier = multiplier

    def raw(self, host: HostState, spec: RequestSpec) -> float:
        if spec.group_policy != GroupPolicy.SOFT_ANTI_AFFINITY:
            return 0.0
        return -float(spec.group_hosts.get(host.host, 0))
