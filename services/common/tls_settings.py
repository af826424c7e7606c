"""The internal-TLS settings every service shares (a base of each service's settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from services.common.config import require, setting
from services.common.identity import ServiceIdentity
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

    def internal_server_credentials(
        self, *, identity: ServiceIdentity | None = None
    ) -> grpc.ServerCredentials | None:
        """Mutual-TLS server credentials that follow the files (rotation without restart).
        With ``identity``, the certificate must name it (WrongIdentity otherwise, at start;
        a rotation to one naming another identity is not taken)."""
        if self.insecure_internal:
            return None
        files = KeyPairFiles(
            Path(self.internal_tls_cert),
            Path(self.internal_tls_key),
            client_ca=Path(self.internal_tls_ca),
            identity=identity,
        )
        return ReloadingServerCredentials(files).credentials()

    def internal_client_tls(
        self, *, identity: ServiceIdentity | None = None
    ) -> ReloadingClientTls | None:
        """The identity this service presents to its peers, following its files (checked
        against ``identity`` as internal_server_credentials does)."""
        if self.insecure_internal:
            return None
        return ReloadingClientTls(
            Path(self.internal_tls_ca),
            Path(self.internal_tls_cert),
            Path(self.internal_tls_key),
            identity=identity,
        )

    def internal_tls(self) -> InternalTls | None:
        if self.insecure_internal:
            return None
        return InternalTls.load(self.internal_tls_ca, self.internal_tls_cert, self.internal_tls_key)
