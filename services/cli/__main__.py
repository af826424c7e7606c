"""novactl: the command-line client of the nova-grpc public API.

Endpoint and token come from --endpoint/--token, else NOVACTL_ENDPOINT/NOVACTL_TOKEN, else the
config file (NOVACTL_CONFIG, default ~/.config/novactl/config.toml: ``endpoint = "..."``,
``token = "..."``, ``cacert = "..."``). An endpoint speaks TLS (verified with --cacert, else
the system's roots) unless it is http://host:port or --insecure is given. Every command
prints a table, or JSON with ``-o json``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

import grpc

from services.cli.client import Client, CliError, resolve, resolve_cacert
from services.cli.commands import account, catalog, servers


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="novactl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoint", help="api address host:port [env NOVACTL_ENDPOINT]")
    parser.add_argument("--token", help="bearer token [env NOVACTL_TOKEN]")
    parser.add_argument("--config", help="config file [env NOVACTL_CONFIG]")
    parser.add_argument(
        "--cacert", help="CA certificate (PEM) of a TLS endpoint [env NOVACTL_CACERT; "
        "default: the system's roots]",
    )  # fmt: skip
    parser.add_argument(
        "--insecure", action="store_true",
        help="plaintext even for a host:port endpoint (http://host:port says so too)",
    )  # fmt: skip
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-call deadline (s)")
    commands = parser.add_subparsers(dest="resource", required=True)
    servers.register(commands)
    catalog.register(commands)
    account.register(commands)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = _parser().parse_args(argv)
    try:
        endpoint, token = resolve(args)
        client = Client(
            endpoint, token, args.timeout, cacert=resolve_cacert(args), insecure=args.insecure
        )
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
