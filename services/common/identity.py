"""Who an internal peer is: the role (and, for compute, the host) its certificate names.

Internal certificates carry a SAN URI ``urn:nova-grpc:<role>`` (``urn:nova-grpc:compute:<host>``
for a compute service); ``pki.py`` issues them that way and every internal server reads it
back from the TLS handshake to decide what the caller may do. No grpc here: the servers'
interceptor (rpc/peers.py) does the extraction.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

URI_PREFIX = "urn:nova-grpc:"

# Host names become file names (compute-<host>.pem) and URI segments: keep them plain.
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


class ServiceRole(enum.Enum):
    API = "api"
    CONDUCTOR = "conductor"
    COMPUTE = "compute"


def valid_host(host: str) -> bool:
    return bool(_HOST.match(host))


@dataclass(frozen=True, slots=True)
class ServiceIdentity:
    role: ServiceRole
    host: str = ""

    def __post_init__(self) -> None:
        if self.role is ServiceRole.COMPUTE and not valid_host(self.host):
            raise ValueError(f"a compute identity needs a plain host name, not {self.host!r}")
        if self.role is not ServiceRole.COMPUTE and self.host:
            raise ValueError(f"only compute identities name a host ({self.role.value})")

    @property
    def uri(self) -> str:
        suffix = f":{self.host}" if self.host else ""
        return f"{URI_PREFIX}{self.role.value}{suffix}"

    def __str__(self) -> str:
        return f"{self.role.value} {self.host}".strip()

    @staticmethod
    def from_uri(uri: str) -> ServiceIdentity | None:
        """The identity a SAN URI names; None for any other URI (or a malformed one)."""
        if not uri.startswith(URI_PREFIX):
            return None
        role_name, _, host = uri[len(URI_PREFIX) :].partition(":")
        try:
            return ServiceIdentity(ServiceRole(role_name), host)
        except ValueError:
            return None


def identity_from_uris(uris: list[str]) -> ServiceIdentity | None:
    """The one identity among a certificate's URIs; None when there is none or several
    different ones (a certificate must not be two things at once)."""
    found = {i for i in (ServiceIdentity.from_uri(u) for u in uris) if i is not None}
    return found.pop() if len(found) == 1 else None
