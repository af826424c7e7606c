"""novactl's connection: endpoint and token from flags, the environment or a config file.

An endpoint is TLS unless it says otherwise: ``host:port`` and ``https://host:port`` are
verified against ``--cacert`` (else the system's roots); only ``http://host:port`` or
``--insecure`` talk plaintext (the local ``make run`` api, or one behind a TLS front you
reach from inside)."""

from __future__ import annotations

import argparse
import os
import ssl
import tomllib
from pathlib import Path
from typing import Any

import grpc

from services.common.generated.novagrpc.v1 import (
    catalog_pb2_grpc,
    compute_services_pb2_grpc,
    keypairs_pb2_grpc,
    quotas_pb2_grpc,
    server_groups_pb2_grpc,
    servers_pb2_grpc,
)

DEFAULT_ENDPOINT = "http://127.0.0.1:8774"  # the plaintext api of `make run`
PLAINTEXT_SCHEME = "http://"
TLS_SCHEME = "https://"


class CliError(Exception):
    """A usage problem novactl reports itself (exit status 2)."""


def config_path() -> Path:
    explicit = os.environ.get("NOVACTL_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "novactl" / "config.toml"


def load_config(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"config file {path}: {exc}") from exc
    unknown = set(data) - {"endpoint", "token", "cacert"}
    if unknown:
        raise CliError(f"config file {path}: unknown keys {sorted(unknown)}")
    return {k: str(v) for k, v in data.items()}


def resolve(args: argparse.Namespace) -> tuple[str, str]:
    """(endpoint, token): flag, else environment, else config file, else default."""
    config = load_config(Path(args.config) if args.config else config_path())
    endpoint = (
        args.endpoint or os.environ.get("NOVACTL_ENDPOINT") or config.get("endpoint")
        or DEFAULT_ENDPOINT
    )  # fmt: skip
    token = args.token or os.environ.get("NOVACTL_TOKEN") or config.get("token", "")
    return endpoint, token


def resolve_cacert(args: argparse.Namespace) -> str:
    """The CA file for TLS endpoints: flag, else NOVACTL_CACERT, else the config file."""
    config = load_config(Path(args.config) if args.config else config_path())
    return str(args.cacert or os.environ.get("NOVACTL_CACERT") or config.get("cacert", ""))


def _system_roots() -> bytes | None:
    """The operating system's CA bundle (None: gRPC's own bundled roots)."""
    cafile = ssl.get_default_verify_paths().cafile
    return Path(cafile).read_bytes() if cafile and Path(cafile).is_file() else None


def open_channel(endpoint: str, *, cacert: str = "", insecure: bool = False) -> grpc.Channel:
    """A channel to ``endpoint``: TLS unless it is ``http://...`` or ``insecure`` is set."""
    plaintext = insecure or endpoint.startswith(PLAINTEXT_SCHEME)
    address = endpoint.removeprefix(PLAINTEXT_SCHEME).removeprefix(TLS_SCHEME).rstrip("/")
    if "://" in address:
        raise CliError(f"endpoint {endpoint!r}: use host:port, https://host:port or http://")
    if plaintext:
        return grpc.insecure_channel(address)
    roots = Path(cacert).read_bytes() if cacert else _system_roots()
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=roots))


class Client:
    def __init__(
        self, endpoint: str, token: str, timeout: float, *, cacert: str = "",
        insecure: bool = False,
    ) -> None:  # fmt: skip
        self.channel = open_channel(endpoint, cacert=cacert, insecure=insecure)
        self.timeout = timeout
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.servers = servers_pb2_grpc.ServersStub(self.channel)
        self.groups = server_groups_pb2_grpc.ServerGroupsStub(self.channel)
        self.flavors = catalog_pb2_grpc.FlavorsStub(self.channel)
        self.images = catalog_pb2_grpc.ImagesStub(self.channel)
        self.keypairs = keypairs_pb2_grpc.KeypairsStub(self.channel)
        self.quotas = quotas_pb2_grpc.QuotasStub(self.channel)
        self.computes = compute_services_pb2_grpc.ComputeServicesStub(self.channel)

    def call(self, method: Any, request: Any) -> Any:
        return method(request, timeout=self.timeout, metadata=self.metadata)

    def stream(self, method: Any, request: Any, timeout: float) -> Any:
        return method(request, timeout=timeout, metadata=self.metadata)
