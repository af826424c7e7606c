"""The internal ComputeDatapath service: the conductor replaces this host's network state."""

from __future__ import annotations

from typing import Any

import grpc

from services.common.errors import Unavailable
from services.common.generated.novagrpc.internal.v1 import datapath_pb2, datapath_pb2_grpc
from services.common.identity import ServiceRole
from services.common.rpc.datapath import state_from_proto
from services.common.rpc.peers import CallerPolicy
from services.compute.manager import ComputeManager
from services.compute.net.driver import DatapathError

SERVICE_NAME = datapath_pb2.DESCRIPTOR.services_by_name["ComputeDatapath"].full_name
CALLERS: CallerPolicy = {
    f"/{SERVICE_NAME}/SetHostNetworkState": frozenset({ServiceRole.CONDUCTOR}),
}


class ComputeDatapathServicer(datapath_pb2_grpc.ComputeDatapathServicer):  # type: ignore[misc]
    def __init__(self, manager: ComputeManager) -> None:
        self._manager = manager

    async def SetHostNetworkState(
        self,
        request: datapath_pb2.SetHostNetworkStateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> datapath_pb2.SetHostNetworkStateResponse:
        state = state_from_proto(request.state)
        manager = self._manager
        try:
            await manager.run_blocking(manager.network.set_host_state, state)
        except DatapathError as exc:
            raise Unavailable(f"the datapath could not apply the network state: {exc}") from exc
        return datapath_pb2.SetHostNetworkStateResponse()
