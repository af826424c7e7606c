"""The public Networks service (protobuf stops here)."""

from __future__ import annotations

from google.protobuf import empty_pb2

from services.api.convert import network_to_proto
from services.api.networks import CreateNetworkCommand, NetworkUseCases
from services.api.paging import PageRequest, bound, page_of, sortable
from services.api.servicer import Context, Identify
from services.common.generated.novagrpc.v1 import networks_pb2, networks_pb2_grpc


class NetworksServicer(networks_pb2_grpc.NetworksServicer):  # type: ignore[misc]
    def __init__(self, networks: NetworkUseCases, identify: Identify) -> None:
        self._networks = networks
        self._identify = identify

    async def CreateNetwork(
        self, request: networks_pb2.CreateNetworkRequest, context: Context
    ) -> networks_pb2.Network:
        caller = await self._identify(context)
        command = CreateNetworkCommand(
            name=request.name,
            cidr=request.cidr,
            gateway_ip=request.gateway_ip,
            dns_nameservers=list(request.dns_nameservers),
            allocation_pools=[(p.start, p.end) for p in request.allocation_pools],
            shared=request.shared,
        )
        return network_to_proto(await self._networks.create(caller, command), admin=caller.is_admin)

    async def GetNetwork(
        self, request: networks_pb2.GetNetworkRequest, context: Context
    ) -> networks_pb2.Network:
        caller = await self._identify(context)
        return network_to_proto(await self._networks.get(caller, request.id), admin=caller.is_admin)

    async def ListNetworks(
        self, request: networks_pb2.ListNetworksRequest, context: Context
    ) -> networks_pb2.ListNetworksResponse:
        caller = await self._identify(context)
        page, next_token = page_of(
            await self._networks.list_networks(caller),
            PageRequest(request.page_size, request.page_token),
            key=lambda n: (sortable(n.network.created_at), n.network.id),
            bound_to=bound("ListNetworks", caller),
        )
        return networks_pb2.ListNetworksResponse(
            networks=[network_to_proto(n, admin=caller.is_admin) for n in page],
            next_page_token=next_token,
        )

    async def DeleteNetwork(
        self, request: networks_pb2.DeleteNetworkRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._networks.delete(await self._identify(context), request.id)
        return empty_pb2.Empty()
