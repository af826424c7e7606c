"""novactl network ...: project networks (openstack network / subnet, folded into one)."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from services.cli import lookup
from services.cli.client import Client
from services.cli.completers import complete
from services.cli.errors import CliError
from services.cli.output import emit, show_many, to_dict
from services.cli.paging import every
from services.common.generated.novagrpc.v1 import networks_pb2

COLUMNS = ("id", "name", "cidr", "gateway_ip", "shared", "ports_in_use", "pool_size")


def _pool(text: str) -> networks_pb2.AllocationPool:
    start, sep, end = text.partition("-")
    if not sep:
        raise CliError(f"--allocation-pool {text!r}: expected START-END")
    return networks_pb2.AllocationPool(start=start, end=end)


def _network(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    stub = client.networks
    if args.network_action == "create":
        request = networks_pb2.CreateNetworkRequest(
            name=args.name,
            cidr=args.subnet_range,
            gateway_ip=args.gateway or "",
            dns_nameservers=args.dns_nameserver,
            allocation_pools=[_pool(p) for p in args.allocation_pool],
            shared=args.share,
        )
        emit(to_dict(client.call(stub.CreateNetwork, request)), args.view, out)
        return 0
    if args.network_action == "list":
        listing = networks_pb2.ListNetworksRequest()
        found = every(client, stub.ListNetworks, listing, items="networks")
        show_many([to_dict(n) for n in found], COLUMNS, args.view, out=out)
        return 0
    network_id = lookup.network_id(client, args.network)
    if args.network_action == "show":
        reply = client.call(stub.GetNetwork, networks_pb2.GetNetworkRequest(id=network_id))
        emit(to_dict(reply), args.view, out)
        return 0
    client.call(stub.DeleteNetwork, networks_pb2.DeleteNetworkRequest(id=network_id))
    out.write(f"network {network_id} deleted\n")
    return 0


def register(commands: Any) -> None:
    network = commands.add_parser("network", help="networks").add_subparsers(
        dest="network_action", required=True, metavar="ACTION"
    )
    created = network.add_parser("create", help="create a network with its IPv4 subnet")
    created.add_argument("name")
    created.add_argument("--subnet-range", required=True, metavar="CIDR", help="e.g. 10.20.0.0/24")
    created.add_argument("--gateway", help="default: the first address; 'none': no gateway")
    created.add_argument("--dns-nameserver", action="append", default=[])
    created.add_argument("--allocation-pool", action="append", default=[], metavar="START-END")
    created.add_argument("--share", action="store_true", help="usable by every project (admin)")
    network.add_parser("list", help="list networks")
    for action in ("show", "delete"):
        complete(network.add_parser(action, help=f"{action} a network").add_argument(
            "network", help="name or id"
        ), "network")  # fmt: skip
    for parser in network.choices.values():
        parser.set_defaults(func=_network)
