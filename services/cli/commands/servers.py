"""novactl server ...: the server lifecycle."""

from __future__ import annotations

import argparse
import base64
import sys
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import grpc

from services.cli.client import Client, CliError
from services.cli.commands import consoles, readiness
from services.cli.output import emit, print_table, show_many, to_dict
from services.common.generated.novagrpc.v1 import servers_pb2

COLUMNS = ("id", "name", "status", "task_state", "power_state", "host", "flavor_name")
SETTLED = {"ACTIVE", "ERROR", "DELETED", "SHUTOFF"}


def row(server: servers_pb2.Server) -> dict[str, Any]:
    data = to_dict(server)
    data["status"] = servers_pb2.ServerStatus.Name(server.status)
    data["power_state"] = servers_pb2.PowerState.Name(server.power_state)
    return data


def _pairs(option: str, values: list[str]) -> dict[str, str]:
    result = {}
    for pair in values:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CliError(f"{option} {pair!r}: expected KEY=VALUE")
        result[key] = value
    return result


def _create(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    request = servers_pb2.CreateServerRequest(
        name=args.name, flavor_ref=args.flavor, image_ref=args.image,
        metadata=_pairs("--meta", args.meta), description=args.description or "",
        availability_zone=args.availability_zone or "", key_name=args.key_name or "",
        networks=args.network, security_groups=args.security_group, tags=args.tag,
        client_request_id=args.client_request_id or "",
        admin_password=args.admin_password or "",
    )  # fmt: skip
    if args.user_data:
        request.user_data = base64.b64encode(Path(args.user_data).read_bytes()).decode()
    hints = _pairs("--hint", args.hint)
    if hints:
        request.scheduler_hints.group = hints.pop("group", "")
        request.scheduler_hints.same_host.extend(
            h for h in hints.pop("same_host", "").split(",") if h
        )
        request.scheduler_hints.different_host.extend(
            h for h in hints.pop("different_host", "").split(",") if h
        )
        if hints:
            raise CliError(f"--hint: unknown hints {sorted(hints)}")
    for size in args.ephemeral:
        request.block_device_mapping.add(
            source_type="blank", destination_type="local", volume_size=size
        )
    low = args.count if args.count is not None else args.min_count
    high = args.count if args.count is not None else args.max_count
    if low is not None:
        request.min_count = low
    if high is not None:
        request.max_count = high
    reply = client.call(client.servers.CreateServer, request)
    if args.wait_ready:
        return _created_ready(client, reply, args, out)
    if not args.wait:
        emit(to_dict(reply), args.output, out)
        return 0
    servers = wait_settled(client, reply, args.wait_timeout, show_progress=args.output == "table")
    rows = [row(s) for s in servers]
    if args.output == "json":
        emit({"reservation_id": reply.reservation_id, "admin_password": reply.admin_password,
              "servers": rows}, "json", out)  # fmt: skip
    else:
        print_table(rows, COLUMNS, out)
        for server in servers:
            if server.fault.message:
                out.write(f"{server.id}: {server.fault.message}\n")
        out.write(f"admin password (shown once): {reply.admin_password}\n")
    return 0 if all(s.status == servers_pb2.ACTIVE for s in servers) else 1


def _created_ready(
    client: Client, reply: servers_pb2.CreateServerResponse, args: argparse.Namespace,
    out: TextIO,
) -> int:  # fmt: skip
    servers = readiness.wait_ready(client, reply, args.wait_timeout)
    rows = [row(s) | {"guest_ready": s.guest_ready.ToJsonString() if s.HasField("guest_ready")
                      else ""} for s in servers]  # fmt: skip
    if args.output == "json":
        emit({"reservation_id": reply.reservation_id, "admin_password": reply.admin_password,
              "servers": rows}, "json", out)  # fmt: skip
    else:
        print_table(rows, (*COLUMNS, "guest_ready"), out)
        out.write(f"admin password (shown once): {reply.admin_password}\n")
    ready = len(servers) == len(reply.server_ids) and all(
        s.HasField("guest_ready") for s in servers
    )
    return 0 if ready else 1


def wait_settled(
    client: Client, reply: servers_pb2.CreateServerResponse, timeout: float, *,
    show_progress: bool,
) -> list[servers_pb2.Server]:  # fmt: skip
    """Follow the reservation with WatchServers until every server settles; a live line of
    BUILD / ACTIVE / ERROR counts on stderr while it waits."""
    wanted = set(reply.server_ids)
    latest: dict[str, servers_pb2.Server] = {}
    stream = client.stream(
        client.servers.WatchServers,
        servers_pb2.WatchServersRequest(reservation_id=reply.reservation_id),
        timeout,
    )
    try:
        for event in stream:
            if event.server.id not in wanted:
                continue
            latest[event.server.id] = event.server
            counts = Counter(servers_pb2.ServerStatus.Name(s.status) for s in latest.values())
            if show_progress:
                line = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
                sys.stderr.write(f"\r[{reply.reservation_id}] {line}   ")
                sys.stderr.flush()
            if len(latest) == len(wanted) and all(
                servers_pb2.ServerStatus.Name(s.status) in SETTLED for s in latest.values()
            ):
                break
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
            raise CliError(f"timed out after {timeout:.0f}s waiting for the servers") from exc
        raise
    finally:
        stream.cancel()
        if show_progress:
            sys.stderr.write("\n")
    return [latest[i] for i in reply.server_ids]


def _list(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    request = servers_pb2.ListServersRequest(
        reservation_id=args.reservation_id or "", name=args.name or "", flavor=args.flavor or "",
        image=args.image or "", tags=args.tag, host=args.host or "",
        all_projects=args.all_projects, limit=args.limit or 0,
    )  # fmt: skip
    if args.status:
        request.status = servers_pb2.ServerStatus.Value(args.status.upper())  # type: ignore[assignment]
    rows: list[dict[str, Any]] = []
    while True:
        page = client.call(client.servers.ListServers, request)
        rows.extend(row(s) for s in page.servers)
        if not page.next_page_token or args.limit:
            break
        request.page_token = page.next_page_token
    show_many(rows, COLUMNS, args.output, out)
    return 0


def _show(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    server = client.call(client.servers.GetServer, servers_pb2.GetServerRequest(id=args.id))
    emit(row(server), args.output, out)
    return 0


def _delete(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    for server_id in args.ids:
        client.call(client.servers.DeleteServer, servers_pb2.DeleteServerRequest(id=server_id))
        out.write(f"delete of {server_id} accepted\n")
    if args.wait:
        for server_id in args.ids:
            _watch_one(client, server_id, {"DELETED"}, args.wait_timeout)
            out.write(f"{server_id} DELETED\n")
    return 0


def _watch_one(client: Client, server_id: str, until: set[str], timeout: float) -> str:
    stream = client.stream(
        client.servers.WatchServers, servers_pb2.WatchServersRequest(server_id=server_id), timeout
    )
    try:
        for event in stream:
            status = servers_pb2.ServerStatus.Name(event.server.status)
            if status in until and not event.server.task_state:
                return status
    finally:
        stream.cancel()
    return "DELETED"  # a watched server's stream ends when it is deleted


def _power(action: str) -> Any:
    def run(client: Client, args: argparse.Namespace, out: TextIO) -> int:
        if action == "reboot":
            kind = (
                servers_pb2.RebootServerRequest.HARD
                if args.hard
                else servers_pb2.RebootServerRequest.SOFT
            )
            request = servers_pb2.RebootServerRequest(id=args.id, type=kind)
            client.call(client.servers.RebootServer, request)
        else:
            method = client.servers.StartServer if action == "start" else client.servers.StopServer
            client.call(method, servers_pb2.ServerActionRequest(id=args.id))
        out.write(f"{action} of {args.id} accepted\n")
        if args.wait:
            settled = _watch_one(client, args.id, {"ACTIVE", "SHUTOFF", "ERROR"}, args.wait_timeout)
            out.write(f"{args.id} {settled}\n")
        return 0

    return run


def _actions(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    reply = client.call(
        client.servers.ListServerActions, servers_pb2.ListServerActionsRequest(server_id=args.id)
    )
    if args.output == "json":
        emit([to_dict(a) for a in reply.actions], "json", out)
        return 0
    rows = []
    for action in reply.actions:
        for event in action.events or [servers_pb2.ServerActionEvent()]:
            rows.append({
                "action": action.action, "event": event.event, "host": event.host,
                "result": event.result, "details": event.details, "message": action.message,
            })  # fmt: skip
    print_table(rows, ("action", "event", "host", "result", "details", "message"), out)
    return 0


def _watch(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    request = servers_pb2.WatchServersRequest(
        server_id=args.id or "", reservation_id=args.reservation_id or ""
    )
    for event in client.stream(client.servers.WatchServers, request, args.wait_timeout):
        data = row(event.server)
        if args.output == "json":
            emit({"change": event.change, "server": data}, "json", out)
        else:
            task = data.get("task_state") or "-"
            out.write(
                f"{event.change:8} {data['id']} {data['status']:7} {task:12} "
                f"{data['power_state']}\n"
            )
        out.flush()
    return 0


def register(commands: Any) -> None:
    server = commands.add_parser("server", help="servers").add_subparsers(
        dest="action", required=True
    )
    _register_create(server)
    _register_others(server)
    consoles.register(server)


def _register_create(server: Any) -> None:
    create = server.add_parser("create", help="create servers")
    create.add_argument("--name", required=True)
    create.add_argument("--flavor", required=True, help="flavor name or id")
    create.add_argument("--image", required=True, help="image name or id")
    create.add_argument("--count", type=int, help="create exactly this many (min = max)")
    create.add_argument("--min-count", type=int)
    create.add_argument("--max-count", type=int)
    create.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--description")
    create.add_argument("--availability-zone", help="zone, or (admins) zone:host[:node]")
    create.add_argument("--key-name")
    create.add_argument("--user-data", metavar="FILE", help="file given to the guest")
    create.add_argument("--admin-password", help="default: generated and shown once")
    create.add_argument("--network", action="append", default=[], help="auto, none or a name")
    create.add_argument("--security-group", action="append", default=[])
    create.add_argument("--tag", action="append", default=[])
    create.add_argument("--hint", action="append", default=[],
                        metavar="group=ID|same_host=ID,..|different_host=ID,..")  # fmt: skip
    create.add_argument("--ephemeral", action="append", type=int, default=[], metavar="GIB",
                        help="an extra blank local disk of this size")  # fmt: skip
    create.add_argument("--client-request-id", help="retry-safe create: same id, same servers")
    create.add_argument("--wait", action="store_true", help="wait until every server settles")
    create.add_argument("--wait-ready", action="store_true",
                        help="wait until every guest says it is up (guest_ready)")  # fmt: skip
    create.add_argument("--wait-timeout", type=float, default=600.0)
    create.set_defaults(func=_create)


def _register_others(server: Any) -> None:
    listing = server.add_parser("list", help="list servers")
    listing.add_argument("--reservation-id")
    listing.add_argument("--name", help="regular expression")
    listing.add_argument("--status", choices=("build", "active", "error", "deleted", "shutoff"))
    listing.add_argument("--flavor")
    listing.add_argument("--image")
    listing.add_argument("--tag", action="append", default=[])
    listing.add_argument("--host", help="admins only")
    listing.add_argument("--all-projects", action="store_true", help="admins only")
    listing.add_argument("--limit", type=int, help="one page of at most this many")
    listing.set_defaults(func=_list)

    show = server.add_parser("show", help="show one server")
    show.add_argument("id")
    show.set_defaults(func=_show)

    delete = server.add_parser("delete", help="delete servers (any state)")
    delete.add_argument("ids", nargs="+", metavar="ID")
    delete.add_argument("--wait", action="store_true", help="wait until they are DELETED")
    delete.add_argument("--wait-timeout", type=float, default=300.0)
    delete.set_defaults(func=_delete)

    for name in ("start", "stop", "reboot"):
        power = server.add_parser(name, help=f"{name} a server")
        power.add_argument("id")
        if name == "reboot":
            power.add_argument("--hard", action="store_true")
        power.add_argument("--wait", action="store_true")
        power.add_argument("--wait-timeout", type=float, default=300.0)
        power.set_defaults(func=_power(name))

    actions = server.add_parser("actions", help="what happened to a server, and why")
    actions.add_argument("id")
    actions.set_defaults(func=_actions)

    watch = server.add_parser("watch", help="follow state changes as they happen")
    watch.add_argument("id", nargs="?", help="one server (default: the whole project)")
    watch.add_argument("--reservation-id")
    watch.add_argument("--wait-timeout", type=float, default=3600.0)
    watch.set_defaults(func=_watch)
