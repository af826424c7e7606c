"""A host weigher: a raw score per host, normalised to [0, 1] and multiplied by its weight."""

from __future__ import annotations

from typing import Protocol

from services.common.domain import HostState
from services.conductor.scheduler.request import RequestSpec


class HostWeigher(Protocol):
    name: str
    multiplier: float

    def raw(self, host: HostState, spec: RequestSpec) -> float: ...
