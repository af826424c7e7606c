"""DifferentHostFilter: with the ``different_host`` hint, none of the named instances' hosts."""

from __future__ import annotations

from services.common.domain import HostState
from services.conductor.scheduler.request import RequestSpec


class DifferentHostFilter:
    name = "DifferentHostFilter"

    def passes(self, host: HostState, spec: RequestSpec) -> bool:
        return host.host not in spec.different_host_hosts
