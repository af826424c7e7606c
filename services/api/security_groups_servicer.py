"""The public SecurityGroups service (protobuf stops here)."""

from __future__ import annotations

from google.protobuf import empty_pb2

from services.api.convert import security_group_rule_to_proto, security_group_to_proto
from services.api.paging import PageRequest, bound, page_of, sortable
from services.api.security_group_rules import CreateRuleCommand
from services.api.security_groups import CreateGroupCommand, SecurityGroupUseCases
from services.api.servicer import Context, Identify
from services.common.generated.novagrpc.v1 import security_groups_pb2, security_groups_pb2_grpc


class SecurityGroupsServicer(security_groups_pb2_grpc.SecurityGroupsServicer):  # type: ignore[misc]
    def __init__(self, groups: SecurityGroupUseCases, identify: Identify) -> None:
        self._groups = groups
        self._identify = identify

    async def CreateSecurityGroup(
        self, request: security_groups_pb2.CreateSecurityGroupRequest, context: Context
    ) -> security_groups_pb2.SecurityGroup:
        caller = await self._identify(context)
        command = CreateGroupCommand(name=request.name, description=request.description)
        return security_group_to_proto(await self._groups.create(caller, command))

    async def GetSecurityGroup(
        self, request: security_groups_pb2.GetSecurityGroupRequest, context: Context
    ) -> security_groups_pb2.SecurityGroup:
        caller = await self._identify(context)
        return security_group_to_proto(await self._groups.get(caller, request.id))

    async def ListSecurityGroups(
        self, request: security_groups_pb2.ListSecurityGroupsRequest, context: Context
    ) -> security_groups_pb2.ListSecurityGroupsResponse:
        caller = await self._identify(context)
        page, next_token = page_of(
            await self._groups.list_groups(caller),
            PageRequest(request.page_size, request.page_token),
            key=lambda g: (g.project_id, sortable(g.created_at), g.id),
            bound_to=bound("ListSecurityGroups", caller),
        )
        return security_groups_pb2.ListSecurityGroupsResponse(
            security_groups=[security_group_to_proto(g) for g in page], next_page_token=next_token
        )

    async def DeleteSecurityGroup(
        self, request: security_groups_pb2.DeleteSecurityGroupRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._groups.delete(await self._identify(context), request.id)
        return empty_pb2.Empty()

    async def CreateSecurityGroupRule(
        self, request: security_groups_pb2.CreateSecurityGroupRuleRequest, context: Context
    ) -> security_groups_pb2.SecurityGroupRule:
        caller = await self._identify(context)
        command = CreateRuleCommand(
            security_group=request.security_group_id,
            direction=request.direction,
            protocol=request.protocol,
            port_range_min=request.port_range_min,
            port_range_max=request.port_range_max,
            remote_ip_prefix=request.remote_ip_prefix,
            remote_group=request.remote_group_id,
        )
        return security_group_rule_to_proto(await self._groups.create_rule(caller, command))

    async def DeleteSecurityGroupRule(
        self, request: security_groups_pb2.DeleteSecurityGroupRuleRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._groups.delete_rule(await self._identify(context), request.id)
        return empty_pb2.Empty()

    async def AddServerSecurityGroup(
        self, request: security_groups_pb2.AddServerSecurityGroupRequest, context: Context
    ) -> empty_pb2.Empty:
        caller = await self._identify(context)
        await self._groups.add_to_server(caller, request.server_id, request.security_group)
        return empty_pb2.Empty()

    async def RemoveServerSecurityGroup(
        self, request: security_groups_pb2.RemoveServerSecurityGroupRequest, context: Context
    ) -> empty_pb2.Empty:
        caller = await self._identify(context)
        await self._groups.remove_from_server(caller, request.server_id, request.security_group)
        return empty_pb2.Empty()
