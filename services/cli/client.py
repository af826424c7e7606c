"""novactl's connection: endpoint, token and CA from flags, a profile, the environment.

The config file (NOVACTL_CONFIG, default ~/.config/novactl/config.toml) holds a default
connection in its top-level keys and named ones under ``[profiles.NAME]``, as clouds.yaml
or kubeconfig contexts do::

    endpoint = "http://127.0.0.1:8774"   # the default profile (plaintext: it says http://)
    token = "..."
    profile = "prod"                 # optional: use this profile when none is named

    [profiles.prod]
    endpoint = "nova.example.com:443"
    token_command = "pass show nova/prod"   # its first output line is the token
    ca = "prod-ca.pem"                       # trust this CA (relative to this file)

Each value is taken from, in order: the flag (--endpoint, --token, --cacert), the profile named
by --profile or NOVACTL_PROFILE, the environment (NOVACTL_ENDPOINT, NOVACTL_TOKEN,
NOVACTL_CACERT), the file's default profile (only when no profile is named), the built-in
default.

An endpoint is TLS unless it says otherwise: ``host:port`` and ``https://host:port`` are
verified against the CA (else the system's roots); only ``http://host:port`` or
``--insecure`` (``insecure = true`` in a profile) talk plaintext (the local ``make run``
api, or one behind a TLS front reached from inside).
"""

from __future__ import annotations

import argparse
import os
import shlex
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc

from services.cli import status
from services.cli.errors import CliError
from services.common.generated.novagrpc.v1 import (
    catalog_pb2_grpc,
    compute_services_pb2_grpc,
    keypairs_pb2_grpc,
    networks_pb2_grpc,
    quotas_pb2_grpc,
    server_groups_pb2_grpc,
    servers_pb2_grpc,
)

__all__ = ["DEFAULT_ENDPOINT", "CliError", "Client", "Connection", "config_path", "resolve"]

DEFAULT_ENDPOINT = "http://127.0.0.1:8774"  # the plaintext api of `make run`
PLAINTEXT_SCHEME = "http://"
TLS_SCHEME = "https://"
PROFILE_KEYS = frozenset({"endpoint", "token", "token_command", "ca", "insecure"})
TOP_LEVEL_KEYS = PROFILE_KEYS | {"profile", "profiles"}
TOKEN_COMMAND_TIMEOUT = timedelta(seconds=30)


@dataclass(frozen=True, kw_only=True)
class Connection:
    endpoint: str
    token: str
    # PEM of the CA to trust; None trusts the system's CAs. Unused when tls is False: the
    # endpoint said http://, or --insecure (the api behind a terminator, or `make run`).
    ca: bytes | None = None
    tls: bool = True


def config_path() -> Path:
    explicit = os.environ.get("NOVACTL_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "novactl" / "config.toml"


def load_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"config file {path}: {exc}") from exc
    _check_keys(path, "", data, allowed=TOP_LEVEL_KEYS)
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise CliError(f"config file {path}: profiles must be a table of [profiles.NAME]")
    for name, profile in profiles.items():
        if not isinstance(profile, dict):
            raise CliError(f"config file {path}: profiles.{name} must be a table")
        _check_keys(path, f"profiles.{name}: ", profile, allowed=PROFILE_KEYS)
    return data


def _check_keys(path: Path, where: str, data: dict[str, Any], *, allowed: frozenset[str]) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise CliError(f"config file {path}: {where}unknown keys {sorted(unknown)}")
    if "token" in data and "token_command" in data:
        raise CliError(f"config file {path}: {where}token and token_command are exclusive")


def _profile(path: Path, config: dict[str, Any], name: str) -> dict[str, Any]:
    profiles: dict[str, Any] = config.get("profiles", {})
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise CliError(f"profile {name!r} is not in {path} (profiles: {known})")
    return dict(profiles[name])


def resolve(args: argparse.Namespace) -> Connection:
    """The connection the flags, the chosen profile, the environment and the file describe."""
    path = Path(args.config) if args.config else config_path()
    config = load_config(path)
    chosen = args.profile or os.environ.get("NOVACTL_PROFILE")
    named = _profile(path, config, chosen) if chosen else {}
    # A named profile is a different cloud: the file's default connection does not fill its gaps.
    default_name = config.get("profile")
    if chosen:
        default: dict[str, Any] = {}
    elif default_name:
        default = _profile(path, config, str(default_name))
    else:
        default = {k: v for k, v in config.items() if k in PROFILE_KEYS}
    environment = {
        "endpoint": os.environ.get("NOVACTL_ENDPOINT") or None,
        "token": os.environ.get("NOVACTL_TOKEN") or None,
        "ca": os.environ.get("NOVACTL_CACERT") or None,
    }
    flags = {"endpoint": args.endpoint, "token": args.token, "ca": args.cacert,
             "insecure": True if getattr(args, "insecure", False) else None}  # fmt: skip
    layers = [flags, named, environment, default]

    def first(key: str) -> Any:
        return next((layer[key] for layer in layers if layer.get(key) is not None), None)

    endpoint = str(first("endpoint") or DEFAULT_ENDPOINT)
    token = _token(layers)
    ca_path = first("ca")
    ca = _read_ca(path, str(ca_path)) if ca_path else None
    tls = not (bool(first("insecure")) or endpoint.startswith(PLAINTEXT_SCHEME))
    address = endpoint.removeprefix(PLAINTEXT_SCHEME).removeprefix(TLS_SCHEME).rstrip("/")
    if "://" in address:
        raise CliError(f"endpoint {endpoint!r}: use host:port, https://host:port or http://")
    return Connection(endpoint=address, token=token, ca=ca, tls=tls)


def _token(layers: list[dict[str, Any]]) -> str:
    """The first layer that sets a token or a token command decides (a profile's command is
    not overridden by a token from a lower layer)."""
    for layer in layers:
        if layer.get("token") is not None:
            return str(layer["token"])
        if layer.get("token_command"):
            return run_token_command(str(layer["token_command"]))
    return ""


def run_token_command(command: str) -> str:
    try:
        done = subprocess.run(
            shlex.split(command), capture_output=True, text=True, check=False,
            timeout=TOKEN_COMMAND_TIMEOUT.total_seconds(),
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CliError(f"token_command {command!r}: {exc}") from exc
    if done.returncode != 0:
        raise CliError(f"token_command {command!r} exited {done.returncode}: {done.stderr.strip()}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise CliError(f"token_command {command!r} printed no token")
    return lines[0].strip()


def _read_ca(config: Path, ca: str) -> bytes:
    path = Path(ca).expanduser()
    if not path.is_absolute():
        path = config.parent / path
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"CA certificate {path}: {exc.strerror}") from exc


def channel(connection: Connection) -> grpc.Channel:
    if not connection.tls:
        return grpc.insecure_channel(connection.endpoint)
    roots = connection.ca if connection.ca is not None else _system_roots()
    credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    return grpc.secure_channel(connection.endpoint, credentials)


def _system_roots() -> bytes | None:
    """The operating system's CA bundle (None: gRPC's own bundled roots)."""
    cafile = ssl.get_default_verify_paths().cafile
    return Path(cafile).read_bytes() if cafile and Path(cafile).is_file() else None


class Client:
    def __init__(
        self,
        connection: Connection,
        timeout: float,
        *,
        page_size: int = 0,
        retries: int = status.DEFAULT_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``retries``: how many times a rate-limited call is sent again, each after the delay
        the server asked for (RetryInfo)."""
        self.channel = channel(connection)
        self.timeout = timeout
        # Items per call of a List RPC (0: the api's default); lists still come whole.
        self.page_size = page_size
        self._retries = retries
        self._sleep = sleep
        token = connection.token
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.servers = servers_pb2_grpc.ServersStub(self.channel)
        self.groups = server_groups_pb2_grpc.ServerGroupsStub(self.channel)
        self.flavors = catalog_pb2_grpc.FlavorsStub(self.channel)
        self.images = catalog_pb2_grpc.ImagesStub(self.channel)
        self.keypairs = keypairs_pb2_grpc.KeypairsStub(self.channel)
        self.networks = networks_pb2_grpc.NetworksStub(self.channel)
        self.quotas = quotas_pb2_grpc.QuotasStub(self.channel)
        self.computes = compute_services_pb2_grpc.ComputeServicesStub(self.channel)

    def call(self, method: Any, request: Any) -> Any:
        attempt = 0
        while True:
            try:
                return method(request, timeout=self.timeout, metadata=self.metadata)
            except grpc.RpcError as exc:
                # Only a refusal that says when to come back is retried: the server refused
                # it before doing any work, so sending it again cannot do anything twice.
                delay = status.retry_delay(exc)
                if delay is None or attempt >= self._retries or delay > status.MAX_RETRY_DELAY:
                    raise
                attempt += 1
                print(
                    f"{status.describe(exc)}; retry {attempt}/{self._retries} "
                    f"in {delay.total_seconds():.3g}s",
                    file=sys.stderr,
                )
                self._sleep(delay.total_seconds())

    def stream(
        self, method: Any, request: Any, timeout: float | None, *, wait_for_ready: bool = False
    ) -> Any:
        """A server stream; ``timeout`` None lets it run until the caller stops it."""
        return method(
            request, timeout=timeout, metadata=self.metadata, wait_for_ready=wait_for_ready
        )
