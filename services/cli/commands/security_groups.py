"""novactl security-group ... and server add/remove security group (openstackclient's
``security group`` and ``server add security group`` commands)."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from services.cli import lookup
from services.cli.client import Client
from services.cli.completers import complete
from services.cli.errors import CliError
from services.cli.output import emit, show_many, to_dict
from services.cli.paging import every
from services.common.generated.novagrpc.v1 import security_groups_pb2, security_groups_pb2_grpc

COLUMNS = ("id", "name", "description", "rules")
RULE_COLUMNS = ("id", "direction", "protocol", "ports", "remote")


def _stub(client: Client) -> Any:
    return security_groups_pb2_grpc.SecurityGroupsStub(client.channel)


def _group_row(group: security_groups_pb2.SecurityGroup) -> dict[str, Any]:
    return {**to_dict(group), "rules": len(group.rules)}


def _rule_row(rule: security_groups_pb2.SecurityGroupRule) -> dict[str, Any]:
    ports = ""
    if rule.port_range_min:
        ports = (
            str(rule.port_range_min)
            if rule.port_range_min == rule.port_range_max
            else f"{rule.port_range_min}:{rule.port_range_max}"
        )
    if rule.remote_group_id:
        remote = f"group {rule.remote_group_id}"
    else:
        remote = rule.remote_ip_prefix or "any"
    return {**to_dict(rule), "ports": ports, "remote": remote}


def _port_range(text: str | None) -> tuple[int, int]:
    """``80`` or ``80:90`` (openstackclient's --dst-port)."""
    if not text:
        return 0, 0
    low, sep, high = text.partition(":")
    try:
        return int(low), int(high) if sep else int(low)
    except ValueError:
        raise CliError(f"--dst-port {text!r}: expected PORT or MIN:MAX") from None


def _group(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    stub = _stub(client)
    if args.action == "create":
        request = security_groups_pb2.CreateSecurityGroupRequest(
            name=args.name, description=args.description or ""
        )
        emit(to_dict(client.call(stub.CreateSecurityGroup, request)), args.view, out)
        return 0
    if args.action == "list":
        listing = security_groups_pb2.ListSecurityGroupsRequest()
        found = every(client, stub.ListSecurityGroups, listing, items="security_groups")
        show_many([_group_row(g) for g in found], COLUMNS, args.view, out=out)
        return 0
    if args.action == "show":
        get = security_groups_pb2.GetSecurityGroupRequest(id=args.group)
        emit(to_dict(client.call(stub.GetSecurityGroup, get)), args.view, out)
        return 0
    client.call(
        stub.DeleteSecurityGroup, security_groups_pb2.DeleteSecurityGroupRequest(id=args.group)
    )
    out.write(f"security group {args.group} deleted\n")
    return 0


def _rule(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    stub = _stub(client)
    if args.rule_action == "create":
        low, high = _port_range(args.dst_port)
        request = security_groups_pb2.CreateSecurityGroupRuleRequest(
            security_group_id=args.group,
            direction=args.direction,
            protocol=args.protocol or "",
            port_range_min=low,
            port_range_max=high,
            remote_ip_prefix=args.remote_ip or "",
            remote_group_id=args.remote_group or "",
        )
        emit(to_dict(client.call(stub.CreateSecurityGroupRule, request)), args.view, out)
        return 0
    if args.rule_action == "list":
        group = client.call(
            stub.GetSecurityGroup, security_groups_pb2.GetSecurityGroupRequest(id=args.group)
        )
        show_many([_rule_row(r) for r in group.rules], RULE_COLUMNS, args.view, out=out)
        return 0
    client.call(
        stub.DeleteSecurityGroupRule,
        security_groups_pb2.DeleteSecurityGroupRuleRequest(id=args.rule),
    )
    out.write(f"security group rule {args.rule} deleted\n")
    return 0


def _server(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    stub = _stub(client)
    server_id = lookup.server_id(client, args.server)
    if args.action == "add":
        request = security_groups_pb2.AddServerSecurityGroupRequest(
            server_id=server_id, security_group=args.group
        )
        client.call(stub.AddServerSecurityGroup, request)
        out.write(f"security group {args.group} added to server {server_id}\n")
    else:
        removal = security_groups_pb2.RemoveServerSecurityGroupRequest(
            server_id=server_id, security_group=args.group
        )
        client.call(stub.RemoveServerSecurityGroup, removal)
        out.write(f"security group {args.group} removed from server {server_id}\n")
    return 0


def register(commands: Any) -> None:
    """``security group ...`` (openstackclient) and ``security-group ...``, and ``add`` /
    ``remove`` under the ``server`` command (which must be registered first)."""
    security = commands.add_parser("security", help="security groups").add_subparsers(
        dest="security_what", required=True, metavar="WHAT"
    )
    _build(security.add_parser("group", help="security groups"))
    _build(commands.add_parser("security-group", help="same as `security group`"))
    _register_server_actions(_subcommands(commands.choices["server"]))


def _build(parser: argparse.ArgumentParser) -> None:
    group = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    created = group.add_parser("create", help="create a security group")
    created.add_argument("name")
    created.add_argument("--description")
    group.add_parser("list", help="list security groups")
    for action in ("show", "delete"):
        group.add_parser(action, help=f"{action} a security group").add_argument(
            "group", help="name or id"
        )
    for sub in group.choices.values():
        sub.set_defaults(func=_group)
    _register_rules(group.add_parser("rule", help="security group rules"))


def _register_rules(parser: argparse.ArgumentParser) -> None:
    rule = parser.add_subparsers(dest="rule_action", required=True, metavar="ACTION")
    created = rule.add_parser("create", help="allow traffic into or out of the group's servers")
    created.add_argument("group", help="the group the rule belongs to (name or id)")
    direction = created.add_mutually_exclusive_group()
    direction.add_argument("--ingress", dest="direction", action="store_const", const="ingress")
    direction.add_argument("--egress", dest="direction", action="store_const", const="egress")
    created.set_defaults(direction="ingress")  # openstackclient's default
    created.add_argument("--protocol", help="tcp, udp, icmp or any (default: any)")
    created.add_argument("--dst-port", metavar="PORT[:MAX]", help="tcp/udp port or range")
    remote = created.add_mutually_exclusive_group()
    remote.add_argument("--remote-ip", metavar="CIDR", help="allowed IPv4 prefix")
    remote.add_argument("--remote-group", metavar="GROUP", help="allow this group's members")
    rule.add_parser("list", help="list a group's rules").add_argument("group", help="name or id")
    rule.add_parser("delete", help="delete a rule").add_argument("rule", help="rule id")
    for sub in rule.choices.values():
        sub.set_defaults(func=_rule)


def _register_server_actions(server: Any) -> None:
    for action, help_text in (("add", "add to a server"), ("remove", "remove from a server")):
        things = server.add_parser(action, help=f"{action} ...").add_subparsers(
            dest="thing", required=True
        )
        security = things.add_parser("security", help="security ...").add_subparsers(
            dest="what", required=True
        )
        parser = security.add_parser("group", help=f"security group: {help_text}")
        complete(parser.add_argument("server", help="server name or id"), "server")
        parser.add_argument("group", help="security group name or id")
        parser.set_defaults(func=_server)


def _subcommands(parser: argparse.ArgumentParser) -> Any:
    """The sub-command table of an existing command (argparse offers no public accessor)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise LookupError(f"{parser.prog} has no sub-commands")
