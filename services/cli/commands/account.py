"""novactl keypair ..., group ..., quota ..., compute-service ...."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from services.cli.client import Client
from services.cli.output import emit, print_table, show_many, to_dict
from services.common.generated.novagrpc.v1 import (
    compute_services_pb2,
    keypairs_pb2,
    quotas_pb2,
    server_groups_pb2,
)


def _keypair(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    stub = client.keypairs
    if args.action == "import":
        key = Path(args.public_key_file).read_text()
        request = keypairs_pb2.ImportKeypairRequest(name=args.name, public_key=key)
        reply = client.call(stub.ImportKeypair, request)
        emit(to_dict(reply), args.output, out)
        return 0
    if args.action == "list":
        reply = client.call(stub.ListKeypairs, keypairs_pb2.ListKeypairsRequest())
        rows = [to_dict(k) for k in reply.keypairs]
        show_many(rows, ("name", "type", "fingerprint"), args.output, out)
        return 0
    if args.action == "show":
        reply = client.call(stub.GetKeypair, keypairs_pb2.GetKeypairRequest(name=args.name))
        emit(to_dict(reply), args.output, out)
        return 0
    client.call(stub.DeleteKeypair, keypairs_pb2.DeleteKeypairRequest(name=args.name))
    out.write(f"keypair {args.name} deleted\n")
    return 0


def _group(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    stub = client.groups
    if args.action == "create":
        reply = client.call(stub.CreateServerGroup, server_groups_pb2.CreateServerGroupRequest(
            name=args.name, policy=args.policy))  # fmt: skip
        emit(to_dict(reply), args.output, out)
        return 0
    if args.action == "list":
        reply = client.call(stub.ListServerGroups, server_groups_pb2.ListServerGroupsRequest())
        rows = [{**to_dict(g), "members": len(g.members)} for g in reply.server_groups]
        show_many(rows, ("id", "name", "policy", "members"), args.output, out)
        return 0
    if args.action == "show":
        reply = client.call(
            stub.GetServerGroup, server_groups_pb2.GetServerGroupRequest(id=args.id)
        )
        emit(to_dict(reply), args.output, out)
        return 0
    client.call(stub.DeleteServerGroup, server_groups_pb2.DeleteServerGroupRequest(id=args.id))
    out.write(f"server group {args.id} deleted\n")
    return 0


def _quota(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.action == "set":
        request = quotas_pb2.SetQuotaRequest(project_id=args.project)
        for name in ("instances", "cores", "ram"):
            value = getattr(args, name)
            if value is not None:
                setattr(request, name, value)
        reply = client.call(client.quotas.SetQuota, request)
    else:
        reply = client.call(client.quotas.GetQuota,
                            quotas_pb2.GetQuotaRequest(project_id=args.project or ""))  # fmt: skip
    if args.output == "json":
        emit(to_dict(reply), "json", out)
        return 0
    rows = [
        {"resource": name, "limit": getattr(reply, name).limit,
         "in_use": getattr(reply, name).in_use}
        for name in ("instances", "cores", "ram")
    ]  # fmt: skip
    out.write(f"project {reply.project_id}\n")
    print_table(rows, ("resource", "limit", "in_use"), out)
    return 0


def _compute_service(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    stub = client.computes
    if args.action == "list":
        reply = client.call(stub.ListComputeServices,
                            compute_services_pb2.ListComputeServicesRequest())  # fmt: skip
        rows = [to_dict(s, defaults=True) for s in reply.services]
        columns = ("host", "availability_zone", "state", "status", "vcpus_used", "vcpus",
                   "memory_mb_used", "memory_mb", "running_vms", "disabled_reason")  # fmt: skip
        show_many(rows, columns, args.output, out)
        return 0
    reply = client.call(
        stub.SetComputeServiceStatus,
        compute_services_pb2.SetComputeServiceStatusRequest(
            host=args.host, enabled=args.action == "enable", disabled_reason=args.reason or ""
        ),
    )
    emit(to_dict(reply), args.output, out)
    return 0


def register(commands: Any) -> None:
    keypair = commands.add_parser("keypair", help="SSH key pairs").add_subparsers(
        dest="action", required=True
    )
    imported = keypair.add_parser("import", help="import a public key")
    imported.add_argument("--name", required=True)
    imported.add_argument("--public-key-file", required=True, help="e.g. ~/.ssh/id_ed25519.pub")
    keypair.add_parser("list", help="list key pairs")
    for action in ("show", "delete"):
        keypair.add_parser(action, help=f"{action} a key pair").add_argument("name")
    _route(keypair, _keypair)

    group = commands.add_parser("group", help="server groups").add_subparsers(
        dest="action", required=True
    )
    created = group.add_parser("create", help="create a server group")
    created.add_argument("--name", required=True)
    created.add_argument("--policy", required=True,
                         choices=("affinity", "anti-affinity", "soft-affinity",
                                  "soft-anti-affinity"))  # fmt: skip
    group.add_parser("list", help="list server groups")
    for action in ("show", "delete"):
        group.add_parser(action, help=f"{action} a server group").add_argument("id")
    _route(group, _group)

    quota = commands.add_parser("quota", help="quotas").add_subparsers(dest="action", required=True)
    shown = quota.add_parser("show", help="limits and usage")
    shown.add_argument("--project", help="another project (admin)")
    changed = quota.add_parser("set", help="set limits (admin); -1 is unlimited")
    changed.add_argument("--project", required=True)
    for name in ("instances", "cores", "ram"):
        changed.add_argument(f"--{name}", type=int)
    _route(quota, _quota)

    computes = commands.add_parser("compute-service", help="compute hosts (admin)")
    actions = computes.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="hosts with capacity, usage, up/down")
    enable = actions.add_parser("enable", help="let a host take builds again")
    enable.add_argument("host")
    enable.set_defaults(reason="")
    disable = actions.add_parser("disable", help="stop sending builds to a host")
    disable.add_argument("host")
    disable.add_argument("--reason", required=True)
    _route(actions, _compute_service)


def _route(actions: Any, handler: Any) -> None:
    """Every leaf command of one resource runs ``handler`` (it dispatches on the action)."""
    for parser in actions.choices.values():
        parser.set_defaults(func=handler)
