"""novactl floating ip ... and novactl external network ...: floating addresses and the
external networks they come from (openstack floating ip / network --external, router
gateway folded into connect/disconnect)."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from services.cli import lookup
from services.cli.client import Client
from services.cli.commands.networks import _pool
from services.cli.output import emit, show_many, to_dict
from services.cli.paging import every
from services.common.generated.novagrpc.v1 import (
    external_networks_pb2,
    external_networks_pb2_grpc,
    floating_ips_pb2,
    floating_ips_pb2_grpc,
)

FLOATING_COLUMNS = ("id", "floating_ip_address", "external_network_name", "server_id",
                    "fixed_ip_address")  # fmt: skip
EXTERNAL_COLUMNS = ("id", "name", "cidr", "bridge", "addresses_in_use", "pool_size")


def _floating(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    stub = floating_ips_pb2_grpc.FloatingIPsStub(client.channel)
    action = args.floating_action
    request: Any
    if action == "create":
        request = floating_ips_pb2.AllocateFloatingIPRequest(
            external_network_id=args.network, floating_ip_address=args.floating_ip_address or ""
        )
        emit(to_dict(client.call(stub.AllocateFloatingIP, request)), args.view, out)
    elif action == "list":
        request = floating_ips_pb2.ListFloatingIPsRequest()
        found = every(client, stub.ListFloatingIPs, request, items="floating_ips")
        show_many([to_dict(f) for f in found], FLOATING_COLUMNS, args.view, out=out)
    elif action == "show":
        reply = client.call(stub.GetFloatingIP, floating_ips_pb2.GetFloatingIPRequest(id=args.id))
        emit(to_dict(reply), args.view, out)
    elif action == "delete":
        client.call(stub.ReleaseFloatingIP, floating_ips_pb2.ReleaseFloatingIPRequest(id=args.id))
        out.write(f"floating ip {args.id} released\n")
    elif action == "set":
        request = floating_ips_pb2.AssociateFloatingIPRequest(
            id=args.id, server_id=lookup.server_id(client, args.server), port_id=args.port or ""
        )
        emit(to_dict(client.call(stub.AssociateFloatingIP, request)), args.view, out)
    else:  # unset
        request = floating_ips_pb2.DisassociateFloatingIPRequest(id=args.id)
        emit(to_dict(client.call(stub.DisassociateFloatingIP, request)), args.view, out)
    return 0


def _external(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    stub = external_networks_pb2_grpc.ExternalNetworksStub(client.channel)
    action = args.external_action
    request: Any
    if action == "create":
        request = external_networks_pb2.CreateExternalNetworkRequest(
            name=args.name, cidr=args.subnet_range, gateway_ip=args.gateway or "",
            allocation_pools=[_pool(p) for p in args.allocation_pool], bridge=args.bridge,
        )  # fmt: skip
        emit(to_dict(client.call(stub.CreateExternalNetwork, request)), args.view, out)
    elif action == "list":
        request = external_networks_pb2.ListExternalNetworksRequest()
        found = every(client, stub.ListExternalNetworks, request, items="external_networks")
        show_many([to_dict(e) for e in found], EXTERNAL_COLUMNS, args.view, out=out)
    elif action == "show":
        request = external_networks_pb2.GetExternalNetworkRequest(id=args.external)
        emit(to_dict(client.call(stub.GetExternalNetwork, request)), args.view, out)
    elif action == "delete":
        request = external_networks_pb2.DeleteExternalNetworkRequest(id=args.external)
        client.call(stub.DeleteExternalNetwork, request)
        out.write(f"external network {args.external} deleted\n")
    elif action == "connect":
        request = external_networks_pb2.ConnectNetworkRequest(
            network_id=lookup.network_id(client, args.network), external_network_id=args.external
        )
        emit(to_dict(client.call(stub.ConnectNetwork, request)), args.view, out)
    else:  # disconnect
        request = external_networks_pb2.DisconnectNetworkRequest(
            network_id=lookup.network_id(client, args.network)
        )
        emit(to_dict(client.call(stub.DisconnectNetwork, request)), args.view, out)
    return 0


def register(commands: Any) -> None:
    floating = commands.add_parser("floating", help="floating addresses").add_subparsers(
        dest="floating_what", required=True, metavar="WHAT"
    )
    ip = floating.add_parser("ip", help="floating addresses").add_subparsers(
        dest="floating_action", required=True, metavar="ACTION"
    )
    created = ip.add_parser("create", help="allocate one from an external network's pool")
    created.add_argument("network", help="the external network (name or id)")
    created.add_argument("--floating-ip-address", help="a particular address of the pool")
    ip.add_parser("list", help="the project's floating addresses")
    for action, text in (("show", "show"), ("delete", "release"),
                         ("unset", "disassociate")):  # fmt: skip
        ip.add_parser(action, help=f"{text} a floating address").add_argument(
            "id", help="id or address"
        )
    associated = ip.add_parser("set", help="associate with a server's port")
    associated.add_argument("id", help="id or address")
    associated.add_argument("--server", required=True, help="name or id")
    associated.add_argument("--port", help="which port (default: the first on a connected network)")
    for parser in ip.choices.values():
        parser.set_defaults(func=_floating)

    external = commands.add_parser("external", help="external networks").add_subparsers(
        dest="external_what", required=True, metavar="WHAT"
    )
    nets = external.add_parser("network", help="external networks").add_subparsers(
        dest="external_action", required=True, metavar="ACTION"
    )
    made = nets.add_parser("create", help="define an external network (admin)")
    made.add_argument("name")
    made.add_argument("--subnet-range", required=True, metavar="CIDR")
    made.add_argument("--bridge", required=True, help="its bridge on every compute host")
    made.add_argument("--gateway", help="the upstream router; default: the first address")
    made.add_argument("--allocation-pool", action="append", default=[], metavar="START-END",
                      help="floating and host gateway addresses (at least one)")  # fmt: skip
    nets.add_parser("list", help="list external networks")
    for action in ("show", "delete"):
        nets.add_parser(action, help=f"{action} an external network").add_argument(
            "external", help="name or id"
        )
    connected = nets.add_parser("connect", help="connect a project network (SNAT out)")
    connected.add_argument("network", help="the project network (name or id)")
    connected.add_argument("external", help="the external network (name or id)")
    nets.add_parser("disconnect", help="disconnect a project network").add_argument(
        "network", help="the project network (name or id)"
    )
    for parser in nets.choices.values():
        parser.set_defaults(func=_external)
