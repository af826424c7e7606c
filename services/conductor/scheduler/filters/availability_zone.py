"""AvailabilityZoneFilter: the host is in the zone the request names (any zone when none)."""

from __future__ import annotations

from services.common.domain import HostState
from services.conductor.scheduler.request import RequestSpec


class AvailabilityZoneFilter:
    name = "AvailabilityZoneFilter"

    def passes(self, host: HostState, spec: RequestSpec) -> bool:
        return spec.availability_zone is None or host.availability_zone == spec.availability_zone
