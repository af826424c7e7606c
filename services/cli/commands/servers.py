"""novactl server ...: the server lifecycle, with openstackclient's command names."""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any, TextIO

from services.cli import lookup
from services.cli.client import Client
from services.cli.commands import consoles, groups, readiness
from services.cli.commands.progress import Progress
from services.cli.commands.watching import follow, wait_settled, watch_one
from services.cli.completers import complete
from services.cli.errors import CliError
from services.cli.output import emit, show_many, to_dict
from services.cli.paging import every
from services.common.generated.novagrpc.v1 import servers_pb2

COLUMNS = ("id", "name", "status", "task_state", "power_state", "networks", "flavor_name")


def row(server: servers_pb2.Server, *, structured: bool = False) -> dict[str, Any]:
    """Every field; in a table, ``networks`` is openstack server list's Networks column
    ("net=10.0.0.5; other=10.1.0.7"), while JSON and YAML keep the field as it is."""
    data = to_dict(server)
    if not structured:
        data["networks"] = "; ".join(f"{a.network}={a.addr}" for a in server.addresses)
    return data


def pairs(option: str, values: list[str]) -> dict[str, str]:
    result = {}
    for pair in values:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CliError(f"{option} {pair!r}: expected KEY=VALUE")
        result[key] = value
    return result


def _name(args: argparse.Namespace) -> str:
    """openstackclient takes the name as an argument; ``--name`` is kept for old scripts."""
    if args.name_arg and args.name and args.name_arg != args.name:
        raise CliError(f"two names given: {args.name_arg!r} and --name {args.name!r}")
    name = args.name_arg or args.name
    if not name:
        raise CliError("a name is required (server create NAME)")
    return str(name)


def _nic(text: str) -> servers_pb2.NetworkRequest:
    """``net=NAME[,v4-fixed-ip=ADDR]`` (openstack server create --nic), ``ip=`` for short."""
    fields = pairs("--nic", [p for p in text.split(",") if p])
    network = fields.pop("net", "") or fields.pop("net-id", "")
    fixed_ip = fields.pop("v4-fixed-ip", "") or fields.pop("ip", "")
    if not network or fields:
        raise CliError(f"--nic {text!r}: expected net=NAME[,ip=ADDR]")
    return servers_pb2.NetworkRequest(network=network, fixed_ip=fixed_ip)


def _create(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    request = servers_pb2.CreateServerRequest(
        name=_name(args), flavor_ref=lookup.catalog_ref(client, "flavor", args.flavor),
        image_ref=lookup.catalog_ref(client, "image", args.image),
        metadata=pairs("--property", args.meta), description=args.description or "",
        availability_zone=args.availability_zone or "", key_name=args.key_name or "",
        networks=args.network, security_groups=args.security_group, tags=args.tag,
        client_request_id=args.client_request_id or "",
        admin_password=args.admin_password or "", config_drive=args.config_drive,
        nics=[_nic(n) for n in args.nic],
    )  # fmt: skip
    if args.user_data:
        request.user_data = base64.b64encode(Path(args.user_data).read_bytes()).decode()
    _hints(client, request, pairs("--hint", args.hint))
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
    view = args.view
    if args.wait_ready:
        return _created_ready(client, reply, args, out=out)
    if not args.wait:
        emit(to_dict(reply), view, out)
        return 0
    progress = Progress.to_stderr(enabled=not view.structured)
    servers = wait_settled(client, reply, timeout=args.wait_timeout, progress=progress)
    rows = [row(s, structured=view.structured) for s in servers]
    if view.structured:
        emit({"reservation_id": reply.reservation_id, "admin_password": reply.admin_password,
              "servers": rows}, view, out)  # fmt: skip
    else:
        show_many(rows, COLUMNS, view, out=out)
        for server in servers:
            if server.fault.message:
                out.write(f"{server.id}: {server.fault.message}\n")
        out.write(f"admin password (shown once): {reply.admin_password}\n")
    return 0 if all(s.status == servers_pb2.SERVER_STATUS_ACTIVE for s in servers) else 1


def _hints(client: Client, request: servers_pb2.CreateServerRequest, hints: dict[str, str]) -> None:
    if "group" in hints:
        request.scheduler_hints.group = lookup.group_id(client, hints.pop("group"))
    for key in ("same_host", "different_host"):
        refs = [h for h in hints.pop(key, "").split(",") if h]
        getattr(request.scheduler_hints, key).extend(lookup.server_ids(client, refs))
    if hints:
        raise CliError(f"--hint: unknown hints {sorted(hints)}")


def _created_ready(
    client: Client, reply: servers_pb2.CreateServerResponse, args: argparse.Namespace, *,
    out: TextIO,
) -> int:  # fmt: skip
    view = args.view
    servers = readiness.wait_ready(client, reply, args.wait_timeout)
    rows = [row(s, structured=view.structured) | {
        "guest_ready": s.guest_ready.ToJsonString() if s.HasField("guest_ready") else ""
    } for s in servers]  # fmt: skip
    if view.structured:
        emit({"reservation_id": reply.reservation_id, "admin_password": reply.admin_password,
              "servers": rows}, view, out)  # fmt: skip
    else:
        show_many(rows, (*COLUMNS, "guest_ready"), view, out=out)
        out.write(f"admin password (shown once): {reply.admin_password}\n")
    ready = len(servers) == len(reply.server_ids) and all(
        s.HasField("guest_ready") for s in servers
    )
    return 0 if ready else 1


def _list(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    request = servers_pb2.ListServersRequest(
        reservation_id=args.reservation_id or "", name=args.name or "",
        flavor=lookup.catalog_ref(client, "flavor", args.flavor) if args.flavor else "",
        image=lookup.catalog_ref(client, "image", args.image) if args.image else "",
        tags=args.tag, host=args.host or "",
        all_projects=args.all_projects,
    )  # fmt: skip
    if args.status:
        request.status = servers_pb2.ServerStatus.Value(f"SERVER_STATUS_{args.status.upper()}")  # type: ignore[assignment]
    if args.limit:  # one page of at most that many
        request.page_size = args.limit
        found = list(client.call(client.servers.ListServers, request).servers)
    else:
        found = every(client, client.servers.ListServers, request, items="servers")
    rows = [row(s, structured=args.view.structured) for s in found]
    show_many(rows, COLUMNS, args.view, out=out)
    return 0


def _show(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    server_id = lookup.server_id(client, args.server)
    server = client.call(client.servers.GetServer, servers_pb2.GetServerRequest(id=server_id))
    emit(row(server, structured=args.view.structured), args.view, out)
    return 0


def _delete(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    ids = lookup.server_ids(client, args.servers)
    for server_id in ids:
        client.call(client.servers.DeleteServer, servers_pb2.DeleteServerRequest(id=server_id))
        out.write(f"delete of {server_id} accepted\n")
    if args.wait:
        for server_id in ids:
            watch_one(client, server_id, {"DELETED"}, timeout=args.wait_timeout)
            out.write(f"{server_id} DELETED\n")
    return 0


def _power(action: str) -> Any:
    def run(client: Client, args: argparse.Namespace, out: TextIO) -> int:
        server_id = lookup.server_id(client, args.server)
        if action == "reboot":
            kind = (
                servers_pb2.RebootServerRequest.REBOOT_TYPE_HARD
                if args.hard
                else servers_pb2.RebootServerRequest.REBOOT_TYPE_SOFT
            )
            request = servers_pb2.RebootServerRequest(id=server_id, type=kind)
            client.call(client.servers.RebootServer, request)
        elif action == "start":
            client.call(client.servers.StartServer, servers_pb2.StartServerRequest(id=server_id))
        else:
            client.call(client.servers.StopServer, servers_pb2.StopServerRequest(id=server_id))
        out.write(f"{action} of {server_id} accepted\n")
        if args.wait:
            settled = watch_one(
                client, server_id, {"ACTIVE", "SHUTOFF", "ERROR"}, timeout=args.wait_timeout
            )
            out.write(f"{server_id} {settled}\n")
        return 0

    return run


def _actions(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    server_id = lookup.server_id(client, args.server)
    request = servers_pb2.ListServerActionsRequest(server_id=server_id)
    found = every(client, client.servers.ListServerActions, request, items="actions")
    if args.view.structured:
        show_many([to_dict(a) for a in found], (), args.view, out=out)
        return 0
    rows = []
    for action in found:
        for event in action.events or [servers_pb2.ServerActionEvent()]:
            rows.append({
                "action": action.action, "event": event.event, "host": event.host,
                "result": event.result, "details": event.details, "message": action.message,
            })  # fmt: skip
    show_many(rows, ("action", "event", "host", "result", "details", "message"), args.view, out=out)
    return 0


def _watch(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    server_id = lookup.server_id(client, args.server) if args.server else ""
    request = servers_pb2.WatchServersRequest(
        server_id=server_id, reservation_id=args.reservation_id or ""
    )
    return follow(client, request, args.view, out=out)


def register(commands: Any) -> None:
    server = commands.add_parser("server", help="servers (and server groups)").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    _register_create(server)
    _register_others(server)
    groups.register(server, commands)
    consoles.register(server)


def _register_create(server: Any) -> None:
    create = server.add_parser("create", help="create servers")
    create.add_argument("name_arg", nargs="?", metavar="NAME")
    create.add_argument("--name", help=argparse.SUPPRESS)  # before openstackclient's NAME
    complete(create.add_argument("--flavor", required=True, help="flavor name or id"), "flavor")
    complete(create.add_argument("--image", required=True, help="image name or id"), "image")
    create.add_argument("--count", type=int, help="create exactly this many (min = max)")
    create.add_argument("--min", "--min-count", dest="min_count", type=int)
    create.add_argument("--max", "--max-count", dest="max_count", type=int)
    create.add_argument("--property", "--meta", dest="meta", action="append", default=[],
                        metavar="KEY=VALUE", help="metadata (repeatable)")  # fmt: skip
    create.add_argument("--description")
    create.add_argument("--availability-zone", help="zone, or (admins) zone:host[:node]")
    complete(create.add_argument("--key-name"), "keypair")
    create.add_argument("--user-data", metavar="FILE", help="file given to the guest")
    create.add_argument("--admin-password", help="default: generated and shown once")
    create.add_argument(
        "--network",
        action="append",
        default=[],
        help="auto (the project's default network), none, or a name or id",
    )
    create.add_argument(
        "--nic",
        action="append",
        default=[],
        metavar="net=NAME[,ip=ADDR]",
        help="a NIC on a network, with a fixed address if given",
    )
    create.add_argument(
        "--config-drive", action="store_true", help="a config drive even without user data or a key"
    )
    create.add_argument("--security-group", action="append", default=[])
    create.add_argument("--tag", action="append", default=[])
    create.add_argument("--hint", action="append", default=[],
                        metavar="group=GROUP|same_host=SERVER,..|different_host=SERVER,..",
                        help="groups and servers by name or id")  # fmt: skip
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
    listing.add_argument("--flavor", help="name or id")
    listing.add_argument("--image", help="name or id")
    listing.add_argument("--tag", "--tags", dest="tag", action="append", default=[])
    listing.add_argument("--host", help="admins only")
    listing.add_argument("--all-projects", action="store_true", help="admins only")
    listing.add_argument("--limit", type=int, help="one page of at most this many")
    listing.set_defaults(func=_list)

    show = server.add_parser("show", help="show one server")
    complete(show.add_argument("server", help="name or id"), "server")
    show.set_defaults(func=_show)

    delete = server.add_parser("delete", help="delete servers (any state)")
    complete(delete.add_argument("servers", nargs="+", metavar="SERVER", help="names or ids"),
             "server")  # fmt: skip
    delete.add_argument("--wait", action="store_true", help="wait until they are DELETED")
    delete.add_argument("--wait-timeout", type=float, default=300.0)
    delete.set_defaults(func=_delete)

    for name in ("start", "stop", "reboot"):
        power = server.add_parser(name, help=f"{name} a server")
        complete(power.add_argument("server", help="name or id"), "server")
        if name == "reboot":
            kind = power.add_mutually_exclusive_group()
            kind.add_argument("--hard", action="store_true")
            kind.add_argument("--soft", dest="hard", action="store_false", help="(default)")
        power.add_argument("--wait", action="store_true")
        power.add_argument("--wait-timeout", type=float, default=300.0)
        power.set_defaults(func=_power(name))

    # openstackclient: `server event list SERVER`; `server actions SERVER` is the old name.
    events = server.add_parser("event", help="what happened to a server, and why")
    event_list = events.add_subparsers(dest="event_action", required=True, metavar="ACTION")
    for parser in (event_list.add_parser("list", help="a server's actions and their events"),
                   server.add_parser("actions", help="same as `server event list`")):  # fmt: skip
        complete(parser.add_argument("server", help="name or id"), "server")
        parser.set_defaults(func=_actions)

    watch = server.add_parser(
        "watch", help="follow state changes until interrupted (reconnects if the stream drops)"
    )
    target = watch.add_argument("server", nargs="?", help="one server, name or id (default: all)")
    complete(target, "server")
    watch.add_argument("--reservation-id")
    watch.set_defaults(func=_watch)
