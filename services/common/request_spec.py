"""The request spec: what the api records with each instance so that the conductor can place
it, and place it again (the alternates chosen and the hosts already tried). Stored as JSON on
the instance row; plain data, no behaviour beyond (de)serialisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class StoredSpec:
    availability_zone: str | None = None
    # Admin-only ``az:host:node``: skips the filters and never reschedules (as Nova).
    force_host: str | None = None
    force_node: str | None = None
    group: str | None = None
    same_host: tuple[str, ...] = ()
    different_host: tuple[str, ...] = ()
    image_properties: Mapping[str, str] = field(default_factory=dict)
    min_count: int = 1
    num_instances: int = 1
    # Chosen with the host, best first: where a failed build goes next.
    alternates: tuple[str, ...] = ()
    # Hosts a build of this instance already failed on (one attempt each).
    tried_hosts: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "availability_zone": self.availability_zone,
            "force_host": self.force_host,
            "force_node": self.force_node,
            "group": self.group,
            "same_host": list(self.same_host),
            "different_host": list(self.different_host),
            "image_properties": dict(self.image_properties),
            "min_count": self.min_count,
            "num_instances": self.num_instances,
            "alternates": list(self.alternates),
            "tried_hosts": list(self.tried_hosts),
        }
        return data

    @staticmethod
    def from_json(data: Mapping[str, Any] | None) -> StoredSpec:
        if not data:
            return StoredSpec()
        return StoredSpec(
            availability_zone=data.get("availability_zone"),
            force_host=data.get("force_host"),
            force_node=data.get("force_node"),
            group=data.get("group"),
            same_host=tuple(data.get("same_host") or ()),
            different_host=tuple(data.get("different_host") or ()),
            image_properties=dict(data.get("image_properties") or {}),
            min_count=int(data.get("min_count") or 1),
            num_instances=int(data.get("num_instances") or 1),
            alternates=tuple(data.get("alternates") or ()),
            tried_hosts=tuple(data.get("tried_hosts") or ()),
        )

    def with_attempt_on(self, host: str) -> StoredSpec:
        return replace(self, tried_hosts=(*self.tried_hosts, host))


def parse_availability_zone(value: str) -> tuple[str | None, str | None, str | None]:
    """Nova's ``az``, ``az:host``, ``az:host:node``, ``:host`` -> (zone, host, node)."""
    if not value:
        return None, None, None
    parts = value.split(":")
    if len(parts) > 3:
        raise ValueError("use zone, zone:host or zone:host:node")
    zone = parts[0] or None
    host = parts[1] if len(parts) > 1 and parts[1] else None
    node = parts[2] if len(parts) > 2 and parts[2] else None
    if node and not host:
        raise ValueError("a node needs its host (zone:host:node)")
    return zone, host, node
