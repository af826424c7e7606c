"""A host filter: a pure predicate of one host's state and one request."""

from __future__ import annotations

from typing import Protocol

from services.common.domain import HostState
from services.conductor.scheduler.request import RequestSpec


class HostFilter(Protocol):
    name: str

    def passes(self, host: HostState, spec: RequestSpec) -> bool: ...
