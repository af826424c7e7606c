"""The public ServerGroups service."""

from __future__ import annotations

from google.protobuf import empty_pb2

from services.api.convert import GROUP_POLICIES, group_to_proto
from services.api.groups import ServerGroupUseCases
from services.api.paging import PageRequest, bound, page_of, sortable
from services.api.servicer import Context, Identify
from services.common.domain import GroupPolicy
from services.common.errors import InvalidArgument
from services.common.generated.novagrpc.v1 import server_groups_pb2, server_groups_pb2_grpc

_POLICIES = {number: policy for policy, number in GROUP_POLICIES.items()}


def requested_policy(request: server_groups_pb2.CreateServerGroupRequest) -> GroupPolicy:
    """group_policy, or the deprecated string of older clients; both set must agree."""
    by_enum = _POLICIES.get(request.group_policy)
    if request.group_policy and by_enum is None:
        raise InvalidArgument("group_policy", f"unknown policy {request.group_policy}")
    by_name: GroupPolicy | None = None
    if request.policy:
        try:
            by_name = GroupPolicy(request.policy)
        except ValueError:
            names = ", ".join(p.value for p in GroupPolicy)
            raise InvalidArgument("policy", f"must be one of {names}") from None
    if by_enum is not None and by_name is not None and by_enum is not by_name:
        raise InvalidArgument("policy", "disagrees with group_policy (set one of the two)")
    chosen = by_enum or by_name
    if chosen is None:
        raise InvalidArgument("group_policy", "is required")
    return chosen


class ServerGroupsServicer(server_groups_pb2_grpc.ServerGroupsServicer):  # type: ignore[misc]
    def __init__(self, groups: ServerGroupUseCases, identify: Identify) -> None:
        self._groups = groups
        self._identify = identify

    async def CreateServerGroup(
        self, request: server_groups_pb2.CreateServerGroupRequest, context: Context
    ) -> server_groups_pb2.ServerGroup:
        caller = await self._identify(context)
        policy = requested_policy(request)
        return group_to_proto(await self._groups.create(request.name, policy, caller))

    async def GetServerGroup(
        self, request: server_groups_pb2.GetServerGroupRequest, context: Context
    ) -> server_groups_pb2.ServerGroup:
        caller = await self._identify(context)
        return group_to_proto(await self._groups.get(request.id, caller))

    async def ListServerGroups(
        self, request: server_groups_pb2.ListServerGroupsRequest, context: Context
    ) -> server_groups_pb2.ListServerGroupsResponse:
        caller = await self._identify(context)
        page, next_token = page_of(
            await self._groups.list_groups(caller),
            PageRequest(request.page_size, request.page_token),
            key=lambda g: (sortable(g.created_at), g.uuid),
            bound_to=bound("ListServerGroups", caller),
        )
        return server_groups_pb2.ListServerGroupsResponse(
            server_groups=[group_to_proto(g) for g in page], next_page_token=next_token
        )

    async def DeleteServerGroup(
        self, request: server_groups_pb2.DeleteServerGroupRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._groups.delete(request.id, await self._identify(context))
        return empty_pb2.Empty()
