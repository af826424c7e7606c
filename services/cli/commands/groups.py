"""novactl server group ...: server groups, as openstackclient names them (``group`` is the
old name, kept as an alias)."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from services.cli import lookup
from services.cli.client import Client
from services.cli.completers import complete
from services.cli.errors import CliError
from services.cli.output import emit, show_many, to_dict
from services.cli.paging import every
from services.common.generated.novagrpc.v1 import server_groups_pb2

POLICIES = ("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")
COLUMNS = ("id", "name", "policy", "members")


def _create(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    name = args.name_arg or args.name
    if not name:
        raise CliError("a name is required (server group create --policy POLICY NAME)")
    # The enum, and Nova's string too: an api older than group_policy reads only the string.
    policy = "SERVER_GROUP_POLICY_" + args.policy.upper().replace("-", "_")
    request = server_groups_pb2.CreateServerGroupRequest(
        name=name, policy=args.policy, group_policy=policy
    )
    reply = client.call(client.groups.CreateServerGroup, request)
    emit(to_dict(reply), args.view, out)
    return 0


def _list(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    request = server_groups_pb2.ListServerGroupsRequest()
    found = every(client, client.groups.ListServerGroups, request, items="server_groups")
    rows = [to_dict(g) for g in found]
    if not args.view.structured:  # a table shows how many; JSON and YAML carry the ids
        rows = [{**r, "members": len(r["members"])} for r in rows]
    show_many(rows, COLUMNS, args.view, out=out)
    return 0


def _show(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    group_id = lookup.group_id(client, args.group)
    reply = client.call(
        client.groups.GetServerGroup, server_groups_pb2.GetServerGroupRequest(id=group_id)
    )
    emit(to_dict(reply), args.view, out)
    return 0


def _delete(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    for ref in args.groups:
        group_id = lookup.group_id(client, ref)
        client.call(
            client.groups.DeleteServerGroup,
            server_groups_pb2.DeleteServerGroupRequest(id=group_id),
        )
        out.write(f"server group {group_id} deleted\n")
    return 0


def register(server: Any, commands: Any) -> None:
    """``server group ...`` (openstackclient) and ``group ...`` (the old name)."""
    _build(server.add_parser("group", help="server groups"))
    _build(commands.add_parser("group", help="server groups (same as `server group`)"))


def _build(group: argparse.ArgumentParser) -> None:
    actions = group.add_subparsers(dest="group_action", required=True, metavar="ACTION")
    created = actions.add_parser("create", help="create a server group")
    created.add_argument("name_arg", nargs="?", metavar="NAME")
    created.add_argument("--name", help=argparse.SUPPRESS)
    created.add_argument("--policy", required=True, choices=POLICIES)
    created.set_defaults(func=_create)
    actions.add_parser("list", help="list server groups").set_defaults(func=_list)
    show = actions.add_parser("show", help="show a server group")
    complete(show.add_argument("group", help="name or id"), "group")
    show.set_defaults(func=_show)
    delete = actions.add_parser("delete", help="delete server groups (members keep running)")
    complete(delete.add_argument("groups", nargs="+", metavar="GROUP", help="names or ids"),
             "group")  # fmt: skip
    delete.set_defaults(func=_delete)
