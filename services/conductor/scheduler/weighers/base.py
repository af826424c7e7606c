"""A host weigher: a raw score per host, normalised to [0, 1] and multiplied by its weight."""

from __future__ import annotations

from typing import Protocol

from services.common.domain import HostState
from services.conductor.scheduler.request import RequestSpec


class HostWeigher(Protocol):
    name: str
    multiplier: float
    # False when consuming resources on a host cannot change the raw score: a bucket whose
    # candidates all score the same on such a weigher can leave it out (it weighs nothing).
    uses_consumption: bool

    def raw(self, host: HostState, spec: RequestSpec) -> float: ...
