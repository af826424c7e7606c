"""novactl: the command-line client of the nova-grpc public API.

Command names follow openstackclient's (server create, server group create, keypair create
--public-key, ...); global options (-o, -c, --sort, --profile, ...) go anywhere on the line.
Connection: --endpoint/--token/--cacert, a --profile of the config file, NOVACTL_* variables;
see ``novactl --help`` and the README. An endpoint speaks TLS (verified with --cacert, else
the system's roots) unless it is http://host:port or --insecure is given. Shell completion:
``novactl completion bash``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import TextIO

import argcomplete
import grpc

from services.cli import options
from services.cli.client import Client, resolve
from services.cli.commands import account, catalog, floating, networks, security_groups, servers
from services.cli.errors import CliError
from services.cli.status import describe

SHELLS = ("bash", "zsh", "fish", "tcsh")


def version() -> str:
    try:
        return metadata.version("nova-grpc")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="novactl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    root.add_argument("--version", action="version", version=f"novactl {version()}")
    options.add_global(root)
    commands = root.add_subparsers(dest="resource", required=True, metavar="COMMAND")
    servers.register(commands)
    catalog.register(commands)
    account.register(commands)
    networks.register(commands)
    security_groups.register(commands)  # after servers: adds server add/remove
    floating.register(commands)
    completion = commands.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(func=None)
    options.add_to_subcommands(root)
    return root


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    cli = parser()
    # Answers and exits when the shell asks for completions; the global options are hidden from
    # each sub-command's --help but must still complete there.
    argcomplete.autocomplete(cli, print_suppressed=True)
    args = options.merge(cli.parse_args(argv))
    if args.func is None:
        out.write(argcomplete.shellcode(["novactl"], shell=args.shell))
        return 0
    try:
        args.view = options.view(args)
        client = Client(
            resolve(args), args.timeout, page_size=args.chunk_size, retries=args.retries
        )
        status: int = args.func(client, args, out)
        return status
    except grpc.RpcError as exc:
        print(f"error: {describe(exc)}", file=sys.stderr)
        return 1
    except CliError as exc:
        print(exc.report(), file=sys.stderr)
        return exc.status
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
