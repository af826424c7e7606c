"""novactl: the command-line client of the nova-grpc public API.

Endpoint and token come from --endpoint/--token, else NOVACTL_ENDPOINT/NOVACTL_TOKEN, else the
config file (NOVACTL_CONFIG, default ~/.config/novactl/config.toml: ``endpoint = "..."``,
``token = "..."``). Every command prints a table, or JSON with ``-o json``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

import grpc

from services.cli.client import Client, CliError, resolve
from services.cli.commands import account, catalog, networks, security_groups, servers


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="novactl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoint", help="api address host:port [env NOVACTL_ENDPOINT]")
    parser.add_argument("--token", help="bearer token [env NOVACTL_TOKEN]")
    parser.add_argument("--config", help="config file [env NOVACTL_CONFIG]")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-call deadline (s)")
    commands = parser.add_subparsers(dest="resource", required=True)
    servers.register(commands)
    catalog.register(commands)
    account.register(commands)
    networks.register(commands)
    security_groups.register(commands)  # after servers: adds server add/remove
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = _parser().parse_args(argv)
    try:
        endpoint, token = resolve(args)
        client = Client(endpoint, token, args.timeout)
        status: int = args.func(client, args, out)
        return status
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        print(f"error: {code}: {details}", file=sys.stderr)
        return 1
    except (CliError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
