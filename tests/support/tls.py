"""Client channels that present the api's certificate from the throwaway PKI
(``services.common.pki.create_pki``): how a test talks to conductor and compute."""

from __future__ import annotations

from pathlib import Path

import grpc

from services.common.tls import InternalTls


def api_identity(pki: Path) -> tuple[Path, Path, Path]:
    """(CA, certificate, key) the api presents to the internal services."""
    return pki / "ca.pem", pki / "api.pem", pki / "api-key.pem"


def _api_tls(pki: Path) -> InternalTls:
    ca, cert, key = api_identity(pki)
    return InternalTls.load(str(ca), str(cert), str(key))


def api_channel(address: str, pki: Path) -> grpc.Channel:
    tls = _api_tls(pki)
    return grpc.secure_channel(address, tls.channel_credentials(), options=tls.channel_options())


def api_aio_channel(address: str, pki: Path) -> grpc.aio.Channel:
    tls = _api_tls(pki)
    return grpc.aio.secure_channel(
        address, tls.channel_credentials(), options=tls.channel_options()
    )


def compute_aio_channel(address: str, pki: Path, host: str) -> grpc.aio.Channel:
    """A channel presenting the certificate of compute host ``host`` (made by create_pki for
    the stack's computes): what a compute's own reports look like to the conductor."""
    tls = InternalTls.load(
        str(pki / "ca.pem"), str(pki / f"compute-{host}.pem"), str(pki / f"compute-{host}-key.pem")
    )
    return grpc.aio.secure_channel(
        address, tls.channel_credentials(), options=tls.channel_options()
    )
