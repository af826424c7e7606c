"""The internal-TLS settings every service shares (a base of each service's settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from services.common.config import require, setting
from services.common.tls import InternalTls
from services.common.tls_reload import (
    KeyPairFiles,
    ReloadingClientTls,
    ReloadingServerCredentials,
)


@dataclass(frozen=True)
class InternalTlsSettings:
    internal_tls_ca: str = setting("", "CA certificate (PEM) that signs every internal peer.")
    internal_tls_cert: str = setting("", "This service's internal certificate (PEM).")
    internal_tls_key: str = setting("", "The private key of internal_tls_cert (PEM).")
    insecure_internal: bool = setting(
        False, "Plaintext between api, conductor and compute. Only say so on a trusted network."
    )

    def check_internal_tls(self) -> None:
        if self.insecure_internal:
            return
        for name in ("internal_tls_ca", "internal_tls_cert", "internal_tls_key"):
            require(
                bool(getattr(self, name)),
                name,
                "required for mutual TLS between the services (or set insecure_internal)",
            )

    def internal_server_credentials(self) -> grpc.ServerCredentials | None:
        """Mutual-TLS server credentials that follow the files (rotation without restart)."""
        if self.insecure_internal:
            return None
        files = KeyPairFiles(
            Path(self.internal_tls_cert),
            Path(self.internal_tls_key),
            client_ca=Path(self.internal_tls_ca),
        )
        return ReloadingServerCredentials(files).credentials()

    def internal_client_tls(self) -> ReloadingClientTls | None:
        """The identity this service presents to its peers, following its files."""
        if self.insecure_internal:
            return None
        return ReloadingClientTls(
            Path(self.internal_tls_ca), Path(self.internal_tls_cert), Path(self.internal_tls_key)
        )

    def internal_tls(self) -> InternalTls | None:
        if self.insecure_internal:
            return None
        return InternalTls.load(self.internal_tls_ca, self.internal_tls_cert, self.internal_tls_key)
