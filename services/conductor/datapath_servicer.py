"""The internal ConductorDatapath service: a compute host asks for its network state."""

from __future__ import annotations

from typing import Any

import grpc

from services.common.errors import InvalidArgument
from services.common.generated.novagrpc.internal.v1 import datapath_pb2, datapath_pb2_grpc
from services.common.identity import ServiceRole
from services.common.rpc.datapath import state_to_proto
from services.common.rpc.peers import CallerPolicy, deny, peer_identity
from services.conductor.host_networks import HostNetworkFanOut

SERVICE_NAME = datapath_pb2.DESCRIPTOR.services_by_name["ConductorDatapath"].full_name
CALLERS: CallerPolicy = {
    f"/{SERVICE_NAME}/GetHostNetworkState": frozenset({ServiceRole.COMPUTE}),
    f"/{SERVICE_NAME}/RefreshHostNetworks": frozenset({ServiceRole.API}),
}


class ConductorDatapathServicer(datapath_pb2_grpc.ConductorDatapathServicer):  # type: ignore[misc]
    def __init__(self, host_networks: HostNetworkFanOut) -> None:
        self._host_networks = host_networks

    async def GetHostNetworkState(
        self,
        request: datapath_pb2.GetHostNetworkStateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> datapath_pb2.GetHostNetworkStateResponse:
        if not request.host:
            raise InvalidArgument("host", "must not be empty")
        identity = peer_identity(context)
        if identity is not None and identity.host != request.host:
            raise deny(context, f"GetHostNetworkState: compute {identity.host} may not ask "
                                f"for host {request.host!r}")  # fmt: skip
        state = await self._host_networks.state_of(request.host)
        return datapath_pb2.GetHostNetworkStateResponse(state=state_to_proto(state))

    async def RefreshHostNetworks(
        self,
        request: datapath_pb2.RefreshHostNetworksRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> datapath_pb2.RefreshHostNetworksResponse:
        self._host_networks.changed()
        return datapath_pb2.RefreshHostNetworksResponse()
