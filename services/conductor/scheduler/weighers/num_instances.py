"""NumInstancesWeigher: the raw score is the host's instance count, so a negative multiplier
spreads instances and a positive one packs them (Nova's default multiplier is 0: off)."""

from __future__ import annotations

from services.common.domain import HostState
from services.conductor.scheduler.request import RequestSpec


class NumInstancesWeigher:
    name = "NumInstancesWeigher"

    # Consumption within a batch changes the score.
    uses_consumption = True

    def __init__(self, multiplier: float = 0.0) -> None:
        self.multiplier = multiplier

    def raw(self, host: HostState, spec: RequestSpec) -> float:
        return float(host.instance_count)
