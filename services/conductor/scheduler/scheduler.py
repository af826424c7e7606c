"""Places a batch of requests on hosts: filter, weigh, choose, consume (all in memory).

Pure: no database, no RPC. The caller claims the choices atomically and retries the losers.

Speed comes from the batch. Requests whose answer depends only on a host's state and the
flavor (no server group, no hints, no forced host) share a *bucket*: the filters run over
every host once per bucket, the weighers' raw scores are kept as arrays, and after each
placement only the host that changed is filtered and scored again. A host's state only ever
shrinks within a batch (consumption), so a host a filter removed stays removed. Weights are
normalised over the current candidates for every request, exactly as Nova does, with numpy.
Constrained requests are placed one by one against every host.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from services.common.domain import HostState
from services.conductor.scheduler.filters.base import HostFilter
from services.conductor.scheduler.filters.capacity import CapacityFilter
from services.conductor.scheduler.request import RequestSpec
from services.conductor.scheduler.weighers.base import HostWeigher

FloatArray = npt.NDArray[np.float64]


@dataclass
class Decision:
    spec: RequestSpec
    host: HostState | None
    # Next best hosts, best first: where the build goes if it fails on ``host``.
    alternates: list[HostState] = field(default_factory=list)
    # filter name -> hosts it removed (for the "No valid host" fault).
    rejected_by: dict[str, int] = field(default_factory=dict)
    host_count: int = 0


def normalised_total(raw: FloatArray, multipliers: FloatArray) -> FloatArray:
    """Per weigher (row), map the candidates' scores onto [0, 1] (all 0 when they are equal),
    multiply and sum (Nova's ``weights.normalize``)."""
    if raw.shape[0] == 0:
        return np.zeros(raw.shape[1])
    low = raw.min(axis=1, keepdims=True)
    span = raw.max(axis=1, keepdims=True) - low
    scaled = np.divide(raw - low, span, out=np.zeros_like(raw), where=span > 0)
    result: FloatArray = multipliers @ scaled
    return result


class Scheduler:
    def __init__(
        self,
        filters: Sequence[HostFilter],
        weighers: Sequence[HostWeigher],
        *,
        host_subset_size: int = 1,
        max_attempts: int = 3,
        rng: random.Random | None = None,
    ) -> None:
        self._filters = list(filters)
        self._weighers = [w for w in weighers if w.multiplier != 0]
        self._multipliers = np.array([w.multiplier for w in self._weighers], dtype=float)
        self._subset = max(1, host_subset_size)
        self._alternates = max(0, max_attempts - 1)
        self._rng = rng or random.Random()
        self._capacity = CapacityFilter()

    # -- one host, one spec ---------------------------------------------------------------

    def first_rejection(self, host: HostState, spec: RequestSpec) -> str | None:
        for host_filter in self._filters:
            if not host_filter.passes(host, spec):
                return host_filter.name
        return None

    def filter_hosts(
        self, hosts: Sequence[HostState], spec: RequestSpec
    ) -> tuple[list[int], dict[str, int]]:
        """Indices of the hosts that pass every filter, and per filter how many it removed."""
        if spec.force_host:
            # A forced host skips the filters; only its capacity is enforced, as Placement does.
            forced = [
                i
                for i, h in enumerate(hosts)
                if h.host == spec.force_host
                and (spec.force_node is None or h.hypervisor_hostname == spec.force_node)
            ]
            if not forced:
                return [], {"forced host": len(hosts)}
            fits = [i for i in forced if self._capacity.passes(hosts[i], spec)]
            return fits, ({} if fits else {self._capacity.name: len(forced)})
        kept: list[int] = []
        rejected: Counter[str] = Counter()
        for i, host in enumerate(hosts):
            name = self.first_rejection(host, spec)
            if name is None:
                kept.append(i)
            else:
                rejected[name] += 1
        return kept, dict(rejected)

    def raw_scores(self, host: HostState, spec: RequestSpec) -> list[float]:
        return [w.raw(host, spec) for w in self._weighers]

    def rank(
        self,
        candidates: npt.NDArray[np.intp],
        raw: FloatArray,
        want: int,
        *,
        multipliers: FloatArray | None = None,
    ) -> list[int]:
        """The ``want`` best candidates (positions into ``candidates``), best first."""
        if len(candidates) == 0:
            return []
        if raw.shape[0] == 0 or len(candidates) == 1:
            return list(range(min(want, len(candidates))))
        weights = self._multipliers if multipliers is None else multipliers
        total = normalised_total(raw, weights)
        if want < len(total):
            top = np.argpartition(-total, want - 1)[:want]
        else:
            top = np.arange(len(total))
        # Ties go to the lower index (host order), so equal hosts are chosen deterministically.
        return sorted(top.tolist(), key=lambda p: (-total[p], candidates[p]))

    def choose(
        self,
        hosts: Sequence[HostState],
        candidates: npt.NDArray[np.intp],
        raw: FloatArray,
        *,
        multipliers: FloatArray | None = None,
    ) -> tuple[HostState, list[HostState]]:
        order = self.rank(candidates, raw, self._subset + self._alternates, multipliers=multipliers)
        pick = self._rng.randrange(min(self._subset, len(order)))
        chosen = order.pop(pick)
        alternates = [hosts[candidates[p]] for p in order[: self._alternates]]
        return hosts[candidates[chosen]], alternates

    # -- a batch --------------------------------------------------------------------------

    def place(self, specs: Sequence[RequestSpec], hosts: Sequence[HostState]) -> list[Decision]:
        """One decision per spec, in order; each choice consumes the host's resources so that
        later specs of the batch see them taken."""
        index = {h.node_id: i for i, h in enumerate(hosts)}
        consumed: list[int] = []
        buckets: dict[tuple[object, ...], _Bucket] = {}
        groups: dict[str, Counter[str]] = {}
        decisions = []
        for asked in specs:
            spec = asked
            if asked.group_uuid:
                members = groups.setdefault(asked.group_uuid, Counter(asked.group_hosts))
                spec = replace(asked, group_hosts=dict(members))
            if spec.is_constrained:
                decision = self._place_one(spec, hosts)
            else:
                bucket = buckets.get(spec.bucket_key)
                if bucket is None:
                    bucket = buckets[spec.bucket_key] = _Bucket(self, spec, hosts)
                decision = bucket.place(spec, consumed)
            if decision.host is not None:
                decision.host.consume(spec.resources)
                consumed.append(index[decision.host.node_id])
                if spec.group_uuid:
                    groups[spec.group_uuid][decision.host.host] += 1
            decisions.append(decision)
        return decisions

    def _place_one(self, spec: RequestSpec, hosts: Sequence[HostState]) -> Decision:
        kept, rejected = self.filter_hosts(hosts, spec)
        if not kept:
            return Decision(spec, None, rejected_by=rejected, host_count=len(hosts))
        candidates = np.array(kept, dtype=np.intp)
        raw = np.array([self.raw_scores(hosts[i], spec) for i in kept], dtype=float).T
        raw = raw.reshape(len(self._weighers), len(kept))
        host, alternates = self.choose(hosts, candidates, raw)
        if spec.force_host:
            alternates = []  # a forced host is never rescheduled elsewhere
        return Decision(spec, host, alternates, rejected, len(hosts))


class _Bucket:
    """The shared filtering and scores of every plain spec with one bucket key."""

    def __init__(self, scheduler: Scheduler, spec: RequestSpec, hosts: Sequence[HostState]):
        self._scheduler = scheduler
        self._hosts = hosts
        kept, rejected = scheduler.filter_hosts(hosts, spec)
        self._alive = np.zeros(len(hosts), dtype=bool)
        self._alive[kept] = True
        self._rejected: Counter[str] = Counter(rejected)
        raw = np.zeros((len(scheduler._weighers), len(hosts)))
        for i in kept:
            raw[:, i] = scheduler.raw_scores(hosts[i], spec)
        # Rows that are flat over the candidates and that no consumption can change weigh
        # nothing for the whole batch (e.g. soft-group weighers for requests without a group):
        # leave them out of every per-request normalisation.
        self._rows = [
            r
            for r, weigher in enumerate(scheduler._weighers)
            if weigher.uses_consumption or (kept and np.ptp(raw[r, kept]) > 0)
        ]
        self._raw = raw[self._rows]
        self._multipliers = scheduler._multipliers[self._rows]
        self._seen = 0

    def _refresh(self, spec: RequestSpec, consumed: list[int]) -> None:
        """Filter and score again the hosts consumed since this bucket last looked."""
        for i in consumed[self._seen :]:
            if not self._alive[i]:
                continue
            name = self._scheduler.first_rejection(self._hosts[i], spec)
            if name is not None:
                self._alive[i] = False
                self._rejected[name] += 1
            else:
                scores = self._scheduler.raw_scores(self._hosts[i], spec)
                self._raw[:, i] = [scores[r] for r in self._rows]
        self._seen = len(consumed)

    def place(self, spec: RequestSpec, consumed: list[int]) -> Decision:
        self._refresh(spec, consumed)
        candidates = np.flatnonzero(self._alive)
        if len(candidates) == 0:
            return Decision(
                spec, None, rejected_by=dict(self._rejected), host_count=len(self._hosts)
            )
        host, alternates = self._scheduler.choose(
            self._hosts, candidates, self._raw[:, candidates], multipliers=self._multipliers
        )
        return Decision(spec, host, alternates, dict(self._rejected), len(self._hosts))
