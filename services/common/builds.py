"""What the conductor sends compute for one build: the instance plus what it needs to spawn."""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.common.domain import Image, Instance


@dataclass(frozen=True, slots=True)
class BuildRequest:
    instance: Instance
    image: Image
    attempt: int = 1
    request_id: str = ""
    # Only in memory, on its way to the config drive (never stored).
    admin_password: str = ""

    @property
    def networks(self) -> tuple[str, ...]:
        """One NIC per entry ("auto": the host's default network); empty: no NIC."""
        return self.instance.networks

    @property
    def uuid(self) -> str:
        return self.instance.uuid


def hostname_for(display_name: str, uuid: str) -> str:
    """The guest's hostname from its display name (as Nova's ``sanitize_hostname``):
    lower-case letters, digits and '-', at most 63 characters."""
    name = re.sub(r"[^a-z0-9-]+", "-", display_name.lower()).strip("-")[:63].strip("-")
    return name or f"server-{uuid[:8]}"
