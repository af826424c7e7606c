"""novactl keypair ..., quota ..., compute service ..., with openstackclient's names (the old
``keypair import``, ``quota set --project`` and ``compute-service`` are kept)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from services.cli.client import Client
from services.cli.completers import complete
from services.cli.errors import CliError
from services.cli.output import emit, show_many, to_dict
from services.cli.paging import every
from services.common.generated.novagrpc.v1 import (
    compute_services_pb2,
    keypairs_pb2,
    quotas_pb2,
)

KEYPAIR_COLUMNS = ("name", "type", "fingerprint")
COMPUTE_COLUMNS = ("host", "availability_zone", "state", "status", "vcpus_used", "vcpus",
                   "memory_mb_used", "memory_mb", "running_vms", "disabled_reason")  # fmt: skip
QUOTA_RESOURCES = ("instances", "cores", "ram")


def _keypair_create(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    name = args.name_arg or args.name
    if not name:
        raise CliError("a name is required (keypair create --public-key FILE NAME)")
    key = Path(args.public_key).expanduser().read_text()
    request = keypairs_pb2.ImportKeypairRequest(name=name, public_key=key)
    emit(to_dict(client.call(client.keypairs.ImportKeypair, request)), args.view, out)
    return 0


def _keypair_list(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    request = keypairs_pb2.ListKeypairsRequest()
    found = every(client, client.keypairs.ListKeypairs, request, items="keypairs")
    show_many([to_dict(k) for k in found], KEYPAIR_COLUMNS, args.view, out=out)
    return 0


def _keypair_show(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    request = keypairs_pb2.GetKeypairRequest(name=args.name)
    emit(to_dict(client.call(client.keypairs.GetKeypair, request)), args.view, out)
    return 0


def _keypair_delete(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    for name in args.names:
        request = keypairs_pb2.DeleteKeypairRequest(name=name)
        client.call(client.keypairs.DeleteKeypair, request)
        out.write(f"keypair {name} deleted\n")
    return 0


def _quota(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    project = args.project_arg or args.project or ""
    if args.quota_action == "set":
        if not project:
            raise CliError("a project is required (quota set ... PROJECT)")
        request = quotas_pb2.SetQuotaRequest(project_id=project)
        for name in QUOTA_RESOURCES:
            value = getattr(args, name)
            if value is not None:
                setattr(request, name, value)
        reply = client.call(client.quotas.SetQuota, request)
    else:
        reply = client.call(client.quotas.GetQuota, quotas_pb2.GetQuotaRequest(project_id=project))
    if args.view.structured:
        emit(to_dict(reply), args.view, out)
        return 0
    rows = [
        {"resource": name, "limit": getattr(reply, name).limit,
         "in_use": getattr(reply, name).in_use}
        for name in QUOTA_RESOURCES
    ]  # fmt: skip
    out.write(f"project {reply.project_id}\n")
    show_many(rows, ("resource", "limit", "in_use"), args.view, out=out)
    return 0


def _compute_list(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    request = compute_services_pb2.ListComputeServicesRequest()
    found = every(client, client.computes.ListComputeServices, request, items="services")
    show_many([to_dict(s) for s in found], COMPUTE_COLUMNS, args.view, out=out)
    return 0


def _compute_set(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.enabled is None:
        raise CliError("say --enable or --disable")
    if not args.enabled and not args.reason:
        raise CliError("--disable needs --disable-reason")
    reply = client.call(
        client.computes.SetComputeServiceStatus,
        compute_services_pb2.SetComputeServiceStatusRequest(
            host=args.host, enabled=args.enabled, disabled_reason=args.reason or ""
        ),
    )
    emit(to_dict(reply), args.view, out)
    return 0


def register(commands: Any) -> None:
    _register_keypair(commands)
    _register_quota(commands)
    _register_compute(commands)


def _register_keypair(commands: Any) -> None:
    keypair = commands.add_parser("keypair", help="SSH key pairs").add_subparsers(
        dest="keypair_action", required=True, metavar="ACTION"
    )
    # openstackclient: `keypair create --public-key FILE NAME`; `keypair import --name NAME
    # --public-key-file FILE` is the old spelling of the same call.
    for action in ("create", "import"):
        create = keypair.add_parser(action, help="import a public key (e.g. ~/.ssh/id_ed25519.pub)")
        create.add_argument("name_arg", nargs="?", metavar="NAME")
        create.add_argument("--name", help=argparse.SUPPRESS)
        create.add_argument("--public-key", "--public-key-file", dest="public_key",
                            required=True, metavar="FILE")  # fmt: skip
        create.set_defaults(func=_keypair_create)
    keypair.add_parser("list", help="list key pairs").set_defaults(func=_keypair_list)
    show = keypair.add_parser("show", help="show a key pair")
    complete(show.add_argument("name"), "keypair")
    show.set_defaults(func=_keypair_show)
    delete = keypair.add_parser("delete", help="delete key pairs")
    complete(delete.add_argument("names", nargs="+", metavar="NAME"), "keypair")
    delete.set_defaults(func=_keypair_delete)


def _register_quota(commands: Any) -> None:
    quota = commands.add_parser("quota", help="quotas").add_subparsers(
        dest="quota_action", required=True, metavar="ACTION"
    )
    shown = quota.add_parser("show", help="limits and usage")
    shown.add_argument("project_arg", nargs="?", metavar="PROJECT", help="another (admin)")
    shown.add_argument("--project", help=argparse.SUPPRESS)
    changed = quota.add_parser("set", help="set limits (admin); -1 is unlimited")
    changed.add_argument("project_arg", nargs="?", metavar="PROJECT")
    changed.add_argument("--project", help=argparse.SUPPRESS)
    for name in QUOTA_RESOURCES:
        changed.add_argument(f"--{name}", type=int)
    for parser in (shown, changed):
        parser.set_defaults(func=_quota)


def _register_compute(commands: Any) -> None:
    # openstackclient: `compute service list`, `compute service set --enable|--disable HOST`.
    compute = commands.add_parser("compute", help="compute hosts (admin)").add_subparsers(
        dest="compute_what", required=True, metavar="WHAT"
    )
    service = compute.add_parser("service", help="compute hosts (admin)").add_subparsers(
        dest="compute_action", required=True, metavar="ACTION"
    )
    service.add_parser("list", help="hosts with capacity, usage, up/down").set_defaults(
        func=_compute_list
    )
    change = service.add_parser("set", help="enable or disable a host")
    change.add_argument("host")
    change.add_argument("service", nargs="?", choices=("nova-compute",),
                        help="openstackclient's binary argument (only nova-compute)")  # fmt: skip
    state = change.add_mutually_exclusive_group(required=True)
    state.add_argument("--enable", dest="enabled", action="store_true", default=None)
    state.add_argument("--disable", dest="enabled", action="store_false")
    change.add_argument("--disable-reason", dest="reason")
    change.set_defaults(func=_compute_set)

    # The old names: compute-service list|enable HOST|disable HOST --reason.
    old = commands.add_parser("compute-service", help="same as `compute service`")
    actions = old.add_subparsers(dest="compute_action", required=True, metavar="ACTION")
    actions.add_parser("list", help="hosts with capacity, usage, up/down").set_defaults(
        func=_compute_list
    )
    enable = actions.add_parser("enable", help="let a host take builds again")
    enable.add_argument("host")
    enable.set_defaults(func=_compute_set, enabled=True, reason="")
    disable = actions.add_parser("disable", help="stop sending builds to a host")
    disable.add_argument("host")
    disable.add_argument("--reason", "--disable-reason", dest="reason", required=True)
    disable.set_defaults(func=_compute_set, enabled=False)
