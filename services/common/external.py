"""External networks and floating addresses, as the API shows them (pure values)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network


class ExternalAddressKind(enum.StrEnum):
    FLOATING = "floating"  # a project's, maybe associated with a port
    GATEWAY = "gateway"  # a host's SNAT source for one connected network


@dataclass(frozen=True, slots=True)
class ExternalNetwork:
    id: str
    name: str
    cidr: IPv4Network
    gateway: IPv4Address | None
    allocation_pools: tuple[tuple[IPv4Address, IPv4Address], ...]
    bridge: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class FloatingIP:
    id: str
    project_id: str
    address: IPv4Address
    external_network_id: str
    external_network_name: str
    created_at: datetime
    port_id: str | None = None
    server_id: str | None = None
    fixed_ip: IPv4Address | None = None
