"""Shell completion of resource names (``novactl server show <TAB>``), as kubectl completes
object names: argcomplete calls these with the line parsed so far, so the profile, endpoint
and token on that line are the ones asked.

A completion that cannot reach the api offers nothing and says why through argcomplete's
warning channel, rather than failing the user's shell.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable, Iterable
from typing import Any

import argcomplete
import grpc

from services.cli import options
from services.cli.client import Client, resolve
from services.cli.errors import CliError
from services.cli.paging import every
from services.common.generated.novagrpc.v1 import (
    catalog_pb2,
    keypairs_pb2,
    networks_pb2,
    server_groups_pb2,
    servers_pb2,
)

# A shell waiting on a TAB should not wait long.
TIMEOUT_SECONDS = 3.0
MAX_SERVERS = 1000


def _servers(client: Client) -> Iterable[str]:
    request = servers_pb2.ListServersRequest(page_size=MAX_SERVERS)  # one page: a TAB is quick
    return (s.name for s in client.call(client.servers.ListServers, request).servers)


def _flavors(client: Client) -> Iterable[str]:
    found = every(
        client, client.flavors.ListFlavors, catalog_pb2.ListFlavorsRequest(), items="flavors"
    )
    return (f.name for f in found)


def _images(client: Client) -> Iterable[str]:
    found = every(client, client.images.ListImages, catalog_pb2.ListImagesRequest(), items="images")
    return (i.name for i in found)


def _groups(client: Client) -> Iterable[str]:
    request = server_groups_pb2.ListServerGroupsRequest()
    found = every(client, client.groups.ListServerGroups, request, items="server_groups")
    return (g.name for g in found)


def _networks(client: Client) -> Iterable[str]:
    request = networks_pb2.ListNetworksRequest()
    return (n.name for n in every(client, client.networks.ListNetworks, request, items="networks"))


def _keypairs(client: Client) -> Iterable[str]:
    request = keypairs_pb2.ListKeypairsRequest()
    return (k.name for k in every(client, client.keypairs.ListKeypairs, request, items="keypairs"))


LISTERS: dict[str, Callable[[Client], Iterable[str]]] = {
    "server": _servers, "flavor": _flavors, "image": _images, "group": _groups,
    "network": _networks, "keypair": _keypairs,
}  # fmt: skip


def names(kind: str) -> Callable[..., list[str]]:
    lister = LISTERS[kind]

    def complete(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
        args = options.merge(copy.copy(parsed_args))
        try:
            client = Client(resolve(args), TIMEOUT_SECONDS)
            found = lister(client)
            return sorted({n for n in found if n.startswith(prefix)})
        except (grpc.RpcError, CliError, OSError) as exc:
            argcomplete.warn(f"novactl: cannot list {kind}s to complete: {exc}")
            return []

    return complete


def complete(action: argparse.Action, kind: str) -> argparse.Action:
    """Offer the names of ``kind`` for this argument."""
    action.completer = names(kind)  # type: ignore[attr-defined]
    return action
