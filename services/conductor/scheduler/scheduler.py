"""Places a batch of requests on hosts: filter, weigh, choose, consume (all in memory).

Pure: no database, no RPC. The caller claims the choices atomically and retries the losers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from services.common.domain import HostState
from services.conductor.scheduler.filters.base import HostFilter
from services.conductor.scheduler.request import RequestSpec
from services.conductor.scheduler.weighers.base import HostWeigher


@dataclass
class Decision:
    spec: RequestSpec
    host: HostState | None
    # filter name -> hosts it removed (for the "No valid host" fault).
    rejected_by: dict[str, int] = field(default_factory=dict)


def _normalise(values: list[float]) -> list[float]:
    low, high = min(values), max(values)
    if high == low:
        return [0.0] * len(values)
    span = high - low
    return [(v - low) / span for v in values]


class Scheduler:
    def __init__(self, filters: Sequence[HostFilter], weighers: Sequence[HostWeigher]) -> None:
        self._filters = list(filters)
        self._weighers = list(weighers)

    def filter_hosts(
        self, hosts: Sequence[HostState], spec: RequestSpec
    ) -> tuple[list[HostState], dict[str, int]]:
        remaining = list(hosts)
        rejected: dict[str, int] = {}
        for host_filter in self._filters:
            kept = [h for h in remaining if host_filter.passes(h, spec)]
            if len(kept) != len(remaining):
                rejected[host_filter.name] = len(remaining) - len(kept)
            remaining = kept
            if not remaining:
                break
        return remaining, rejected

    def weigh(self, hosts: Sequence[HostState], spec: RequestSpec) -> list[HostState]:
        """Best first."""
        if len(hosts) <= 1 or not self._weighers:
            return list(hosts)
        totals = [0.0] * len(hosts)
        for weigher in self._weighers:
            scores = _normalise([weigher.raw(h, spec) for h in hosts])
            for i, score in enumerate(scores):
                totals[i] += weigher.multiplier * score
        order = sorted(range(len(hosts)), key=lambda i: (-totals[i], hosts[i].host))
        return [hosts[i] for i in order]

    def place(self, specs: Sequence[RequestSpec], hosts: Sequence[HostState]) -> list[Decision]:
        """One decision per spec, in order; each choice consumes the host's free resources so
        that later specs of the same batch see them taken."""
        decisions = []
        for spec in specs:
            candidates, rejected = self.filter_hosts(hosts, spec)
            if not candidates:
                decisions.append(Decision(spec, None, rejected))
                continue
            best = self.weigh(candidates, spec)[0]
            best.consume(spec.resources)
            decisions.append(Decision(spec, best, rejected))
        return decisions
