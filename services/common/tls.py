"""Mutual TLS for the internal services (api <-> conductor <-> compute).

Every internal connection presents a certificate signed by the deployment's CA, and every
internal server requires one. Certificates name the fixed identity ``nova-grpc-internal``
(clients check it instead of the peer's address, which on Kubernetes is a pod IP nobody knows
when the certificate is made): the trust lies in the CA, mutually.

This module is what the services load at run time; making certificates (pki.py) needs the
cryptography package, which would cost every service ~10 MiB of memory for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

INTERNAL_NAME = "nova-grpc-internal"


@dataclass(frozen=True, slots=True)
class InternalTls:
    ca: bytes
    cert: bytes
    key: bytes

    @staticmethod
    def load(ca: str, cert: str, key: str) -> InternalTls:
        return InternalTls(Path(ca).read_bytes(), Path(cert).read_bytes(), Path(key).read_bytes())

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )

    @staticmethod
    def channel_options() -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", INTERNAL_NAME)]
