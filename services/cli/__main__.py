"""novactl: the command-line client of the nova-grpc public API."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, TextIO

import grpc

from services.cli.output import print_json, print_record, print_table, to_dict
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc

DEFAULT_ENDPOINT = "127.0.0.1:8774"
SERVER_COLUMNS = ("id", "name", "status", "task_state", "power_state", "host", "flavor_name")
TERMINAL = {"ACTIVE", "ERROR", "DELETED", "SHUTOFF"}


class CliError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="novactl", description="nova-grpc command-line client")
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("NOVACTL_ENDPOINT", DEFAULT_ENDPOINT),
        help="api address host:port [env NOVACTL_ENDPOINT; default %(default)s]",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("NOVACTL_TOKEN", ""),
        help="bearer token (nova-grpc-manage token create) [env NOVACTL_TOKEN]",
    )
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-call deadline (s)")
    commands = parser.add_subparsers(dest="resource", required=True)
    server = commands.add_parser("server", help="servers").add_subparsers(
        dest="action", required=True
    )
    create = server.add_parser("create", help="create servers")
    create.add_argument("--name", required=True)
    create.add_argument("--flavor", required=True, help="flavor name or id")
    create.add_argument("--image", required=True, help="image name or id")
    create.add_argument("--count", type=int, help="create exactly this many (min = max)")
    create.add_argument("--min-count", type=int)
    create.add_argument("--max-count", type=int)
    create.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--wait", action="store_true", help="wait until every server settles")
    create.add_argument("--wait-timeout", type=float, default=600.0)
    listing = server.add_parser("list", help="list servers")
    listing.add_argument("--reservation-id", default="")
    show = server.add_parser("show", help="show one server")
    show.add_argument("id")
    delete = server.add_parser("delete", help="delete servers (any state)")
    delete.add_argument("ids", nargs="+", metavar="ID")
    delete.add_argument("--wait", action="store_true", help="wait until they are DELETED")
    delete.add_argument("--wait-timeout", type=float, default=300.0)
    return parser


def _metadata(pairs: Sequence[str]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CliError(f"--meta {pair!r}: expected KEY=VALUE")
        result[key] = value
    return result


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self._channel = grpc.insecure_channel(args.endpoint)
        self.servers = servers_pb2_grpc.ServersStub(self._channel)
        self.timeout = args.timeout
        self.metadata = (("authorization", f"Bearer {args.token}"),) if args.token else ()

    def call(self, method: Any, request: Any) -> Any:
        return method(request, timeout=self.timeout, metadata=self.metadata)


def _server_row(server: servers_pb2.Server) -> dict[str, Any]:
    row = to_dict(server)
    row["status"] = servers_pb2.ServerStatus.Name(server.status)
    row["power_state"] = servers_pb2.PowerState.Name(server.power_state)
    return row


def _create(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    request = servers_pb2.CreateServerRequest(
        name=args.name, flavor_ref=args.flavor, image_ref=args.image, metadata=_metadata(args.meta)
    )
    low = args.count if args.count is not None else args.min_count
    high = args.count if args.count is not None else args.max_count
    if low is not None:
        request.min_count = low
    if high is not None:
        request.max_count = high
    reply = client.call(client.servers.CreateServer, request)
    if not args.wait:
        if args.output == "json":
            print_json(to_dict(reply), out)
        else:
            print_record(
                {"reservation_id": reply.reservation_id, "server_ids": list(reply.server_ids)}, out
            )
        return 0
    return _wait(client, reply, args, out)


def _wait(
    client: Client, reply: servers_pb2.CreateServerResponse, args: argparse.Namespace, out: TextIO
) -> int:
    deadline = time.monotonic() + args.wait_timeout
    wanted = set(reply.server_ids)
    last = ""
    delay = 0.05
    while True:
        found = client.call(
            client.servers.ListServers,
            servers_pb2.ListServersRequest(reservation_id=reply.reservation_id),
        )
        servers = [s for s in found.servers if s.id in wanted]
        counts = Counter(servers_pb2.ServerStatus.Name(s.status) for s in servers)
        progress = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        if progress != last and args.output == "table":
            print(f"[{reply.reservation_id}] {progress}", file=sys.stderr)
            last = progress
        settled = len(servers) == len(wanted) and all(
            servers_pb2.ServerStatus.Name(s.status) in TERMINAL for s in servers
        )
        if settled:
            break
        if time.monotonic() > deadline:
            raise CliError(f"timed out after {args.wait_timeout:.0f}s: {progress}")
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    rows = [_server_row(s) for s in servers]
    if args.output == "json":
        print_json(rows, out)
    else:
        print_table(rows, SERVER_COLUMNS, out)
        for server in servers:
            if server.fault.message:
                out.write(f"{server.id}: {server.fault.message}\n")
    return 0 if all(s.status == servers_pb2.ACTIVE for s in servers) else 1


def _list(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    found = client.call(
        client.servers.ListServers,
        servers_pb2.ListServersRequest(reservation_id=args.reservation_id),
    )
    rows = [_server_row(s) for s in found.servers]
    if args.output == "json":
        print_json(rows, out)
    else:
        print_table(rows, SERVER_COLUMNS, out)
    return 0


def _show(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    server = client.call(client.servers.GetServer, servers_pb2.GetServerRequest(id=args.id))
    row = _server_row(server)
    if args.output == "json":
        print_json(row, out)
    else:
        print_record(row, out)
    return 0


def _delete(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    for server_id in args.ids:
        client.call(client.servers.DeleteServer, servers_pb2.DeleteServerRequest(id=server_id))
        out.write(f"delete of {server_id} accepted\n")
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.wait_timeout
    pending = set(args.ids)
    while pending:
        for server_id in list(pending):
            server = client.call(
                client.servers.GetServer, servers_pb2.GetServerRequest(id=server_id)
            )
            if server.status == servers_pb2.DELETED:
                pending.discard(server_id)
                out.write(f"{server_id} DELETED\n")
        if pending and time.monotonic() > deadline:
            raise CliError(f"timed out waiting for {len(pending)} deletes")
        time.sleep(0.1 if pending else 0)
    return 0


COMMANDS = {
    ("server", "create"): _create,
    ("server", "list"): _list,
    ("server", "show"): _show,
    ("server", "delete"): _delete,
}


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[(args.resource, args.action)](Client(args), args, out)
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        print(f"error: {code}: {details}", file=sys.stderr)
        return 1
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
