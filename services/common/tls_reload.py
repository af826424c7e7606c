"""Server certificates that follow their files: when the certificate or key file changes (a
renewal by cert-manager, an operator's rotation), new connections get the new pair; open ones
keep theirs, so no call is dropped and nothing restarts.

gRPC asks the fetcher for a new configuration at each new handshake; it answers "no change"
after comparing file stamps (a few stat calls), and loads the files only when one changed.
A half-written rotation (a certificate whose key is not there yet) is refused with a warning
and tried again at the next handshake, while the old pair stays in service; so is a
certificate that names another identity than the service's own (``KeyPairFiles.identity``).
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from services.common.certificate_names import certificate_uris
from services.common.identity import ServiceIdentity, identity_from_uris
from services.common.tls import InternalTls

log = logging.getLogger(__name__)

Stamp = tuple[tuple[int, int, int], ...]


class WrongIdentity(ValueError):
    """The certificate is sound but names another identity than the service's own."""


# what makes a set of files unusable (the old set then stays in service)
UNUSABLE = (OSError, ssl.SSLError, ValueError)


@dataclass(frozen=True, slots=True)
class KeyPairFiles:
    cert: Path
    key: Path
    # the CA that client certificates must chain to (mutual TLS); None: no client certificate
    client_ca: Path | None = None
    # the identity the certificate must name (its SAN URI); None: not checked
    identity: ServiceIdentity | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.cert, self.key) if self.client_ca is None else (
            self.cert, self.key, self.client_ca
        )  # fmt: skip

    def stamp(self) -> Stamp:
        stats = [os.stat(p) for p in self.paths]
        return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)

    def check(self) -> None:
        """Raise (one of UNUSABLE) unless the key belongs to the certificate, the CA file is
        readable PEM and the certificate names ``identity``: what the files must satisfy
        before they are served, at start and after a rotation."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        if self.client_ca is not None:
            context.load_verify_locations(cafile=self.client_ca)
        if self.identity is not None:
            named = identity_from_uris(certificate_uris(self.cert.read_bytes()))
            if named != self.identity:
                raise WrongIdentity(
                    f"certificate {self.cert} names "
                    f"{named.uri if named else 'no nova-grpc identity'}, "
                    f"but this service is {self.identity.uri}"
                )

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.client_ca.read_bytes() if self.client_ca else None,
        )


class ReloadingServerCredentials:
    def __init__(self, files: KeyPairFiles) -> None:
        """Loads the files now: a service must not start with a broken pair."""
        self._files = files
        self._stamp = files.stamp()
        files.check()
        self._initial = files.configuration()
        self.reloads = 0

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._initial,
            self._fetch,
            require_client_authentication=self._files.client_ca is not None,
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            stamp = self._files.stamp()
            if stamp == self._stamp:
                return None
            self._files.check()
            configuration = self._files.configuration()
        except UNUSABLE as exc:
            log.warning("new TLS files for %s not usable yet (%s)", self._files.cert, exc)
            return None
        self._stamp = stamp
        self.reloads += 1
        log.info("TLS certificate %s reloaded for new connections", self._files.cert)
        return configuration


class ReloadingClientTls:
    """The internal client identity (CA, certificate, key) that follows its files: ``current``
    looks at the files at most every ``check_every`` seconds and bumps ``generation`` when a
    complete new set is there (the channel pool then opens new channels with it)."""

    def __init__(
        self,
        ca: Path,
        cert: Path,
        key: Path,
        *,
        check_every: float = 1.0,
        identity: ServiceIdentity | None = None,
    ) -> None:
        self._ca = ca
        self._files = KeyPairFiles(cert, key, client_ca=ca, identity=identity)
        self._check_every = check_every
        self._stamp = self._files.stamp()
        self._files.check()
        self._tls = InternalTls(ca.read_bytes(), cert.read_bytes(), key.read_bytes())
        self._checked = time.monotonic()
        self.generation = 0

    def current(self) -> InternalTls:
        now = time.monotonic()
        if now - self._checked >= self._check_every:
            self._checked = now
            self._reload()
        return self._tls

    def _reload(self) -> None:
        files = self._files
        try:
            stamp = files.stamp()
            if stamp == self._stamp:
                return
            files.check()
            tls = InternalTls(
                self._ca.read_bytes(), files.cert.read_bytes(), files.key.read_bytes()
            )
        except UNUSABLE as exc:
            log.warning("new TLS files for %s not usable yet (%s)", files.cert, exc)
            return
        self._stamp, self._tls = stamp, tls
        self.generation += 1
        log.info("internal client certificate %s reloaded for new channels", files.cert)
