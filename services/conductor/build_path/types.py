"""What the parts of the build path hand each other (no behaviour, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.builds import BuildSpec
from services.common.domain import HostState
from services.common.records import Placement
from services.common.stores import FaultRecord

NO_VALID_HOST = "No valid host was found"


@dataclass(frozen=True, slots=True)
class Cast:
    """One BuildInstances message, kept whole: a multi-create is placed in one pass."""

    instance_uuids: tuple[str, ...]
    request_id: str = ""
    # Only in memory, on its way to the config drive; never logged.
    admin_password: str = field(default="", repr=False)


@dataclass
class HostBuilds:
    """The builds one host gets in one BuildAndRunInstance."""

    host: HostState
    builds: list[BuildSpec] = field(default_factory=list)


@dataclass
class BatchPlan:
    """What one placement pass decided and recorded."""

    by_host: dict[str, HostBuilds] = field(default_factory=dict)
    failed: list[FaultRecord] = field(default_factory=list)
    placements: list[Placement] = field(default_factory=list)
    skipped: int = 0
    # claims whose host's generation moved under them (another conductor claimed there first;
    # placed again on fresh host states): what scale-out costs, counted (make bench)
    claim_conflicts: int = 0


def no_valid_host_message(rejected: dict[str, int], host_count: int) -> tuple[str, str]:
    """(user message, admin details): users see the short reason, admins the per-filter counts
    (Nova hides the counts from everyone, and its users complain)."""
    if host_count == 0:
        return NO_VALID_HOST + ": no compute hosts are registered", "hosts: 0"
    counts = ", ".join(f"{name} removed {n}" for name, n in rejected.items())
    message = f"{NO_VALID_HOST}: no host fits the request"
    return message, f"hosts: {host_count}; {counts or 'claims lost to concurrent requests'}"
