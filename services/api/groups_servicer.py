"""The public ServerGroups service."""

from __future__ import annotations

from google.protobuf import empty_pb2

from services.api.convert import group_to_proto
from services.api.groups import ServerGroupUseCases
from services.api.servicer import Context, Identify
from services.common.generated.novagrpc.v1 import server_groups_pb2, server_groups_pb2_grpc


class ServerGroupsServicer(server_groups_pb2_grpc.ServerGroupsServicer):  # type: ignore[misc]
    def __init__(self, groups: ServerGroupUseCases, identify: Identify) -> None:
        self._groups = groups
        self._identify = identify

    async def CreateServerGroup(
        self, request: server_groups_pb2.CreateServerGroupRequest, context: Context
    ) -> server_groups_pb2.ServerGroup:
        caller = await self._identify(context)
        return group_to_proto(await self._groups.create(request.name, request.policy, caller))

    async def GetServerGroup(
        self, request: server_groups_pb2.GetServerGroupRequest, context: Context
    ) -> server_groups_pb2.ServerGroup:
        caller = await self._identify(context)
        return group_to_proto(await self._groups.get(request.id, caller))

    async def ListServerGroups(
        self, request: server_groups_pb2.ListServerGroupsRequest, context: Context
    ) -> server_groups_pb2.ListServerGroupsResponse:
        caller = await self._identify(context)
        found = await self._groups.list_groups(caller)
        return server_groups_pb2.ListServerGroupsResponse(
            server_groups=[group_to_proto(g) for g in found]
        )

    async def DeleteServerGroup(
        self, request: server_groups_pb2.DeleteServerGroupRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._groups.delete(request.id, await self._identify(context))
        return empty_pb2.Empty()
