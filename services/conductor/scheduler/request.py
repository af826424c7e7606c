"""What the scheduler is asked to place: one instance's needs, with everything the filters
and weighers read already resolved (group member hosts, hint hosts), so that each filter is a
pure function of one host's state and this spec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.common.domain import GroupPolicy, Resources


@dataclass(frozen=True, slots=True)
class RequestSpec:
    instance_uuid: str
    project_id: str
    resources: Resources
    availability_zone: str | None = None
    force_host: str | None = None
    force_node: str | None = None
    image_properties: Mapping[str, str] = field(default_factory=dict)
    group_uuid: str | None = None
    group_policy: GroupPolicy | None = None
    # host -> members of the instance's server group already there
    group_hosts: Mapping[str, int] = field(default_factory=dict)
    same_host_hosts: frozenset[str] | None = None
    different_host_hosts: frozenset[str] = frozenset()
    # hosts a build already failed on: never chosen again for this instance
    ignore_hosts: frozenset[str] = frozenset()
    reservation_id: str = ""
    min_count: int = 1

    @property
    def is_constrained(self) -> bool:
        """True when the answer depends on more than the host and the flavor: such specs are
        placed one by one against every host; the others share one filtering per batch."""
        return bool(
            self.force_host
            or self.group_uuid
            or self.same_host_hosts is not None
            or self.different_host_hosts
            or self.ignore_hosts
        )

    @property
    def bucket_key(self) -> tuple[object, ...]:
        """Specs with the same key get the same filter answers from the same host state."""
        return (
            self.resources,
            self.availability_zone,
            tuple(sorted(self.image_properties.items())),
        )
