"""novactl's connection: endpoint and token from flags, the environment or a config file."""

from __future__ import annotations

import argparse
import os
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

DEFAULT_ENDPOINT = "127.0.0.1:8774"


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
    unknown = set(data) - {"endpoint", "token"}
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


class Client:
    def __init__(self, endpoint: str, token: str, timeout: float) -> None:
        self.channel = grpc.insecure_channel(endpoint)
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

    def stream(self, method: Any, request: Any, timeout: float | None) -> Any:
        return method(request, timeout=timeout, metadata=self.metadata)
