"""The public ExternalNetworks and FloatingIPs services (protobuf stops here)."""

from __future__ import annotations

from google.protobuf import empty_pb2

from services.api.convert import network_to_proto
from services.api.external_networks import (
    CreateExternalNetworkCommand,
    ExternalNetworkUseCases,
    ExternalUsage,
)
from services.api.floating_ips import FloatingIPUseCases
from services.api.paging import PageRequest, bound, page_of, sortable
from services.api.servicer import Context, Identify
from services.common.external import FloatingIP
from services.common.generated.novagrpc.v1 import (
    external_networks_pb2,
    external_networks_pb2_grpc,
    floating_ips_pb2,
    floating_ips_pb2_grpc,
    networks_pb2,
)
from services.common.rpc.convert import to_timestamp


def external_to_proto(usage: ExternalUsage) -> external_networks_pb2.ExternalNetwork:
    network = usage.network
    return external_networks_pb2.ExternalNetwork(
        id=network.id,
        name=network.name,
        cidr=str(network.cidr),
        gateway_ip=str(network.gateway) if network.gateway else "",
        allocation_pools=[
            networks_pb2.AllocationPool(start=str(first), end=str(last))
            for first, last in network.allocation_pools
        ],
        bridge=network.bridge,
        created_at=to_timestamp(network.created_at),
        addresses_in_use=usage.addresses_in_use,
        pool_size=usage.pool_size,
    )


def floating_to_proto(floating: FloatingIP) -> floating_ips_pb2.FloatingIP:
    return floating_ips_pb2.FloatingIP(
        id=floating.id,
        project_id=floating.project_id,
        floating_ip_address=str(floating.address),
        external_network_id=floating.external_network_id,
        external_network_name=floating.external_network_name,
        port_id=floating.port_id or "",
        server_id=floating.server_id or "",
        fixed_ip_address=str(floating.fixed_ip) if floating.fixed_ip else "",
        created_at=to_timestamp(floating.created_at),
    )


class ExternalNetworksServicer(external_networks_pb2_grpc.ExternalNetworksServicer):  # type: ignore[misc]
    def __init__(self, externals: ExternalNetworkUseCases, identify: Identify) -> None:
        self._externals = externals
        self._identify = identify

    async def CreateExternalNetwork(
        self, request: external_networks_pb2.CreateExternalNetworkRequest, context: Context
    ) -> external_networks_pb2.ExternalNetwork:
        caller = await self._identify(context)
        command = CreateExternalNetworkCommand(
            name=request.name,
            cidr=request.cidr,
            bridge=request.bridge,
            gateway_ip=request.gateway_ip,
            allocation_pools=[(p.start, p.end) for p in request.allocation_pools],
        )
        return external_to_proto(await self._externals.create(caller, command))

    async def GetExternalNetwork(
        self, request: external_networks_pb2.GetExternalNetworkRequest, context: Context
    ) -> external_networks_pb2.ExternalNetwork:
        caller = await self._identify(context)
        return external_to_proto(await self._externals.get(caller, request.id))

    async def ListExternalNetworks(
        self, request: external_networks_pb2.ListExternalNetworksRequest, context: Context
    ) -> external_networks_pb2.ListExternalNetworksResponse:
        caller = await self._identify(context)
        page, next_token = page_of(
            await self._externals.list_external(caller),
            PageRequest(request.page_size, request.page_token),
            key=lambda e: (sortable(e.network.created_at), e.network.id),  # oldest first, as before
            bound_to=bound("ListExternalNetworks", caller),
        )
        return external_networks_pb2.ListExternalNetworksResponse(
            external_networks=[external_to_proto(e) for e in page], next_page_token=next_token
        )

    async def DeleteExternalNetwork(
        self, request: external_networks_pb2.DeleteExternalNetworkRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._externals.delete(await self._identify(context), request.id)
        return empty_pb2.Empty()

    async def ConnectNetwork(
        self, request: external_networks_pb2.ConnectNetworkRequest, context: Context
    ) -> networks_pb2.Network:
        caller = await self._identify(context)
        usage = await self._externals.connect(
            caller, request.network_id, request.external_network_id
        )
        return network_to_proto(usage, admin=caller.is_admin)

    async def DisconnectNetwork(
        self, request: external_networks_pb2.DisconnectNetworkRequest, context: Context
    ) -> networks_pb2.Network:
        caller = await self._identify(context)
        usage = await self._externals.disconnect(caller, request.network_id)
        return network_to_proto(usage, admin=caller.is_admin)


class FloatingIPsServicer(floating_ips_pb2_grpc.FloatingIPsServicer):  # type: ignore[misc]
    def __init__(self, floating: FloatingIPUseCases, identify: Identify) -> None:
        self._floating = floating
        self._identify = identify

    async def AllocateFloatingIP(
        self, request: floating_ips_pb2.AllocateFloatingIPRequest, context: Context
    ) -> floating_ips_pb2.FloatingIP:
        caller = await self._identify(context)
        made = await self._floating.allocate(
            caller, request.external_network_id, request.floating_ip_address
        )
        return floating_to_proto(made)

    async def ListFloatingIPs(
        self, request: floating_ips_pb2.ListFloatingIPsRequest, context: Context
    ) -> floating_ips_pb2.ListFloatingIPsResponse:
        caller = await self._identify(context)
        page, next_token = page_of(
            await self._floating.list_floating(caller),
            PageRequest(request.page_size, request.page_token),
            # by address (the id breaks a tie across external networks whose ranges overlap)
            key=lambda f: (int(f.address), f.id),
            bound_to=bound("ListFloatingIPs", caller),
        )
        return floating_ips_pb2.ListFloatingIPsResponse(
            floating_ips=[floating_to_proto(f) for f in page], next_page_token=next_token
        )

    async def GetFloatingIP(
        self, request: floating_ips_pb2.GetFloatingIPRequest, context: Context
    ) -> floating_ips_pb2.FloatingIP:
        caller = await self._identify(context)
        return floating_to_proto(await self._floating.get(caller, request.id))

    async def ReleaseFloatingIP(
        self, request: floating_ips_pb2.ReleaseFloatingIPRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._floating.release(await self._identify(context), request.id)
        return empty_pb2.Empty()

    async def AssociateFloatingIP(
        self, request: floating_ips_pb2.AssociateFloatingIPRequest, context: Context
    ) -> floating_ips_pb2.FloatingIP:
        caller = await self._identify(context)
        found = await self._floating.associate(
            caller, request.id, request.server_id, port_id=request.port_id
        )
        return floating_to_proto(found)

    async def DisassociateFloatingIP(
        self, request: floating_ips_pb2.DisassociateFloatingIPRequest, context: Context
    ) -> floating_ips_pb2.FloatingIP:
        caller = await self._identify(context)
        return floating_to_proto(await self._floating.disassociate(caller, request.id))
