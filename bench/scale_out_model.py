"""The throughput model of the scale-out benchmark: what N conductors on M cores can place,
from the CPU each instance costs in every process that handles it.

Two limits, whichever is lower:

- **each conductor is one Python process** (one event loop, one GIL): it can do at most one
  core's worth of work, so N conductors place at most ``N * 1000 / conductor_ms`` instances/s;
- **the cores are shared** by everything placed on them: M cores give at most
  ``M * 1000 / sum(ms of every process on them)`` instances/s.

The costs are measured per instance over a whole run (placing it, sending it to its host, the
build's state reports), so claim conflicts — which grow with N — are inside the conductors'
and PostgreSQL's figures at the N they were measured at. The model leaves out what CPU does
not show: PostgreSQL's row locks on the hosts being claimed (a conflict costs a retry, which is
CPU, but also a wait), commit latency, and the network between the machines.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Bound(Enum):
    CONDUCTORS = "conductors"  # every conductor at one full core
    CORES = "cores"  # the cores, shared by everything on them


@dataclass(frozen=True)
class Costs:
    """CPU-ms per instance, by where it was spent."""

    conductor: float  # all conductor processes together
    postgres: float  # PostgreSQL backends serving the conductors and the api
    api: float
    compute: float

    def on_cores(self, *, api: bool, compute: bool) -> float:
        """CPU-ms per instance of what runs on the cores considered."""
        return (
            self.conductor
            + self.postgres
            + (self.api if api else 0.0)
            + (self.compute if compute else 0.0)
        )


@dataclass(frozen=True)
class Prediction:
    per_second: float
    bound: Bound


def predict(
    costs: Costs, *, conductors: int, cores: float, api: bool = True, compute: bool = False
) -> Prediction:
    """Instances/s that ``conductors`` conductor processes can place on ``cores`` cores that
    also run PostgreSQL and, as asked, the api and the computes."""
    if conductors < 1 or cores <= 0:
        raise ValueError("conductors must be >= 1 and cores > 0")
    by_conductors = conductors * 1000.0 / costs.conductor
    by_cores = cores * 1000.0 / costs.on_cores(api=api, compute=compute)
    if by_conductors < by_cores:
        return Prediction(by_conductors, Bound.CONDUCTORS)
    return Prediction(by_cores, Bound.CORES)
