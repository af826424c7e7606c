"""The one internal build contract: what the conductor sends compute for one build.

The conductor makes a BuildSpec once (services/conductor/build_path/factory.py); the internal
proto's InstanceBuild mirrors it field for field; compute turns it straight into its spawn
spec. Nothing in it is a database row or an api shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from services.common.domain import Flavor, Resources
from services.common.networking import AddressSet, PortSpec


@dataclass(frozen=True, slots=True)
class BuildImage:
    """The image to boot, as compute fetches it: a disk file, or a kernel with its initrd and
    command line in ``properties``."""

    id: str
    name: str
    disk_format: str
    location: str
    # sha256 of the file at location, hex.
    checksum: str
    size_bytes: int = 0
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BuildSpec:
    uuid: str
    # The database's integer id, for the libvirt name template instance-%08x.
    instance_id: int
    display_name: str
    project_id: str
    flavor: Flavor
    image: BuildImage
    created_at: datetime
    request_id: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    # One NIC per entry ("auto": the host's default network); empty: no NIC. Only for
    # instances recorded before ports existed; otherwise ``ports`` are the NICs.
    networks: tuple[str, ...] = ()
    # The NICs in device order, with their networks' subnets.
    ports: tuple[PortSpec, ...] = ()
    # The address sets the ports' rules name (the members of their remote groups).
    address_sets: tuple[AddressSet, ...] = ()
    # Extra blank local disks, GiB each (the one shape block devices take past the api).
    ephemeral_gb: tuple[int, ...] = ()
    # What the guest finds on its config drive, made when config_drive is set.
    config_drive: bool = False
    availability_zone: str = ""
    key_name: str = ""
    key_data: str = ""
    # Base64, as the user gave it.
    user_data: str = ""
    # Only in memory, on its way to the config drive (never stored, never logged).
    admin_password: str = field(default="", repr=False)

    @property
    def resources(self) -> Resources:
        """What the build holds on its host: the flavor plus its extra local disks."""
        flavor = self.flavor
        return Resources(flavor.vcpus, flavor.memory_mb, flavor.root_gb + sum(self.ephemeral_gb))


def hostname_for(display_name: str, uuid: str) -> str:
    """The guest's hostname from its display name (as Nova's ``sanitize_hostname``):
    lower-case letters, digits and '-', at most 63 characters."""
    name = re.sub(r"[^a-z0-9-]+", "-", display_name.lower()).strip("-")[:63].strip("-")
    return name or f"server-{uuid[:8]}"


@dataclass(frozen=True, slots=True)
class BuildAck:
    """What a host answered to one BuildAndRunInstance: how many builds it queued, and those it
    had already (a resend)."""

    queued: int
    duplicates: list[str]
