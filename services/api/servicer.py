"""The public services: protobuf stops here; inside, plain dataclasses."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc
from google.protobuf import empty_pb2

from services.api.auth import Authenticator
from services.api.context import RequestContext
from services.api.convert import action_to_proto, server_to_proto
from services.api.create import CreateServerCommand, CreateServers
from services.api.delete import DeleteServer
from services.api.queries import ServerQueries
from services.common.context import current_request_id, new_request_id
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class Identify:
    """Turns a call's bearer token into a RequestContext (shared by the public servicers)."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def __call__(self, context: Context) -> RequestContext:
        identity = await self._auth.identify(context.invocation_metadata())
        return RequestContext(
            project_id=identity.project_id,
            request_id=current_request_id() or new_request_id(),
            is_admin=identity.is_admin,
        )


class ServersServicer(servers_pb2_grpc.ServersServicer):  # type: ignore[misc]
    def __init__(
        self,
        create: CreateServers,
        queries: ServerQueries,
        delete: DeleteServer,
        identify: Identify,
    ) -> None:
        self._create = create
        self._queries = queries
        self._delete = delete
        self._identify = identify

    async def CreateServer(
        self, request: servers_pb2.CreateServerRequest, context: Context
    ) -> servers_pb2.CreateServerResponse:
        hints = request.scheduler_hints
        command = CreateServerCommand(
            name=request.name,
            flavor_ref=request.flavor_ref,
            image_ref=request.image_ref,
            min_count=request.min_count if request.HasField("min_count") else None,
            max_count=request.max_count if request.HasField("max_count") else None,
            metadata=dict(request.metadata),
            availability_zone=request.availability_zone,
            group=hints.group,
            same_host=list(hints.same_host),
            different_host=list(hints.different_host),
        )
        result = await self._create(command, await self._identify(context))
        return servers_pb2.CreateServerResponse(
            server_ids=result.server_ids, reservation_id=result.reservation_id
        )

    async def GetServer(
        self, request: servers_pb2.GetServerRequest, context: Context
    ) -> servers_pb2.Server:
        caller = await self._identify(context)
        return server_to_proto(await self._queries.get(request.id, caller), admin=caller.is_admin)

    async def ListServers(
        self, request: servers_pb2.ListServersRequest, context: Context
    ) -> servers_pb2.ListServersResponse:
        caller = await self._identify(context)
        found = await self._queries.list_servers(caller, reservation_id=request.reservation_id)
        return servers_pb2.ListServersResponse(
            servers=[server_to_proto(i, admin=caller.is_admin) for i in found]
        )

    async def DeleteServer(
        self, request: servers_pb2.DeleteServerRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._delete(request.id, await self._identify(context))
        return empty_pb2.Empty()

    async def ListServerActions(
        self, request: servers_pb2.ListServerActionsRequest, context: Context
    ) -> servers_pb2.ListServerActionsResponse:
        caller = await self._identify(context)
        found = await self._queries.actions(request.server_id, caller)
        return servers_pb2.ListServerActionsResponse(
            actions=[action_to_proto(a, admin=caller.is_admin) for a in found]
        )
