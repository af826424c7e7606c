"""RAMWeigher: more free RAM scores higher (a positive multiplier spreads, negative stacks)."""

from __future__ import annotations

from services.common.domain import HostState
from services.conductor.scheduler.request import RequestSpec


class RAMWeigher:
    name = "RAMWeigher"

    # Consumption within a batch changes the score.
    uses_consumption = True

    def __init__(self, multiplier: float = 1.0) -> None:
        self.multiplier = multiplier

    def raw(self, host: HostState, spec: RequestSpec) -> float:
        return float(host.free.memory_mb)
