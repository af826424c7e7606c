"""Compute's own view of its capacity: the last check before a build touches the hypervisor.

The conductor's claim in the database is the source of truth; this one catches what the
database cannot see (a hypervisor whose capacity shrank, a build that arrives after the host
was reconfigured) and refuses the build so the conductor can place it elsewhere.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from services.common.domain import ZERO, Resources


class ClaimRefused(Exception):
    """The host cannot take this instance now."""


@dataclass(frozen=True, slots=True)
class Ratios:
    cpu: float
    ram: float
    disk: float


class ResourceTracker:
    def __init__(self, ratios: Ratios) -> None:
        self._ratios = ratios
        self._total: Resources | None = None
        self._claims: dict[str, Resources] = {}
        # The sum of ``_claims``, kept as they change: re-adding every claim on each new one
        # made filling a host quadratic in its instance count.
        self._used = ZERO
        self._lock = threading.Lock()

    def set_capacity(self, total: Resources) -> None:
        with self._lock:
            self._total = total

    @property
    def used(self) -> Resources:
        with self._lock:
            return self._used

    def _drop(self, claimed: Resources) -> None:
        # Resources lives in the domain and has no subtraction; this is its only user.
        used = self._used
        self._used = Resources(
            used.vcpus - claimed.vcpus,
            used.memory_mb - claimed.memory_mb,
            used.disk_gb - claimed.disk_gb,
        )

    def limits(self) -> Resources | None:
        if self._total is None:
            return None
        return Resources(
            int(self._total.vcpus * self._ratios.cpu),
            int(self._total.memory_mb * self._ratios.ram),
            int(self._total.disk_gb * self._ratios.disk),
        )

    def claim(self, uuid: str, request: Resources) -> None:
        """Hold ``request`` for ``uuid`` (idempotent) or raise ClaimRefused saying what is short."""
        with self._lock:
            if uuid in self._claims:
                return
            limits = self.limits()
            if limits is not None:
                used = self._used
                for name, asked, have, limit in (
                    ("vCPUs", request.vcpus, used.vcpus, limits.vcpus),
                    ("MiB of RAM", request.memory_mb, used.memory_mb, limits.memory_mb),
                    ("GiB of disk", request.disk_gb, used.disk_gb, limits.disk_gb),
                ):
                    if have + asked > limit:
                        raise ClaimRefused(
                            f"host has {max(0, limit - have)} free {name}, {asked} requested"
                        )
            self._claims[uuid] = request
            self._used = self._used + request

    def restore(self, uuid: str, request: Resources) -> None:
        """Record a claim for an instance that already runs here (after a restart): never
        refused, the instance exists whatever the arithmetic says."""
        with self._lock:
            previous = self._claims.get(uuid)
            if previous is not None:
                self._drop(previous)
            self._claims[uuid] = request
            self._used = self._used + request

    def release(self, uuid: str) -> bool:
        with self._lock:
            claimed = self._claims.pop(uuid, None)
            if claimed is None:
                return False
            self._drop(claimed)
            return True

    def __len__(self) -> int:
        return len(self._claims)

    def __contains__(self, uuid: object) -> bool:
        """Whether this host holds a claim for the instance (it runs or builds here)."""
        return uuid in self._claims
