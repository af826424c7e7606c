"""Ids or names wherever novactl names a resource, as openstackclient resolves them.

An exact id wins; otherwise the name must match exactly one resource. A name shared by several
is an error that lists their ids, so the user can pick one (never a silent first match).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import grpc

from services.cli.client import Client
from services.cli.errors import Ambiguous, NotFound
from services.cli.paging import every
from services.common.generated.novagrpc.v1 import (
    catalog_pb2,
    networks_pb2,
    server_groups_pb2,
    servers_pb2,
)

# Server ids are UUIDs: anything else cannot be one, so it skips the GetServer round trip.
UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


def pick(kind: str, ref: str, candidates: Iterable[tuple[str, str]]) -> str:
    """The id of the one (id, name) candidate ``ref`` names."""
    items = list(candidates)
    for item_id, _ in items:
        if item_id == ref:
            return item_id
    named = sorted(item_id for item_id, name in items if name == ref)
    if len(named) == 1:
        return named[0]
    if named:
        raise Ambiguous(
            f"{kind} name {ref!r} is ambiguous: {len(named)} match ({', '.join(named)}); use an id"
        )
    raise NotFound(f"no {kind} with the id or name {ref!r}")


def server_id(client: Client, ref: str) -> str:
    if UUID.match(ref):
        try:
            server = client.call(client.servers.GetServer, servers_pb2.GetServerRequest(id=ref))
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                raise
        else:
            return str(server.id)
    request = servers_pb2.ListServersRequest(name=f"^{re.escape(ref)}$")
    found = every(client, client.servers.ListServers, request, items="servers")
    return pick("server", ref, [(s.id, s.name) for s in found])


def flavor_id(client: Client, ref: str) -> str:
    found = every(
        client, client.flavors.ListFlavors, catalog_pb2.ListFlavorsRequest(), items="flavors"
    )
    return pick("flavor", ref, ((f.id, f.name) for f in found))


def image_id(client: Client, ref: str) -> str:
    found = every(client, client.images.ListImages, catalog_pb2.ListImagesRequest(), items="images")
    return pick("image", ref, ((i.id, i.name) for i in found))


def network_id(client: Client, ref: str) -> str:
    request = networks_pb2.ListNetworksRequest()
    found = every(client, client.networks.ListNetworks, request, items="networks")
    return pick("network", ref, ((n.id, n.name) for n in found))


def group_id(client: Client, ref: str) -> str:
    request = server_groups_pb2.ListServerGroupsRequest()
    found = every(client, client.groups.ListServerGroups, request, items="server_groups")
    return pick("server group", ref, ((g.id, g.name) for g in found))


def catalog_ref(client: Client, kind: str, ref: str) -> str:
    """A flavor or image for a create or a filter: its id when ``ref`` names one, an error
    listing the candidates when it names several, else ``ref`` itself, so that the api's own
    NOT_FOUND (naming the request field) reaches the user."""
    find = flavor_id if kind == "flavor" else image_id
    try:
        return find(client, ref)
    except Ambiguous:
        raise
    except NotFound:
        return ref


def server_ids(client: Client, refs: Iterable[str]) -> list[str]:
    return [server_id(client, ref) for ref in refs]
