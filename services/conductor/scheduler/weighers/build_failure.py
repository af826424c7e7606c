"""BuildFailureWeigher: hosts whose recent builds failed score lower, by a large multiplier so
that a failing host is used only when nothing else fits (Nova's default: 1000000)."""

from __future__ import annotations

from services.common.domain import HostState
from services.conductor.scheduler.request import RequestSpec


class BuildFailureWeigher:
    name = "BuildFailureWeigher"

    # Nothing a batch consumes changes the score (only the database or the group does).
    uses_consumption = False

    def __init__(self, multiplier: float = 1_000_000.0) -> None:
        self.multiplier = multiplier

    def raw(self, host: HostState, spec: RequestSpec) -> float:
        return -float(host.failed_builds)
