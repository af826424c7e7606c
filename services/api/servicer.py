"""The public Servers service: protobuf stops here; inside, plain dataclasses."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from services.api.auth import Authenticator
from services.api.usecases import (
    CreateServerCommand,
    CreateServers,
    DeleteServer,
    RequestContext,
    ServerQueries,
)
from services.common.context import current_request_id, new_request_id
from services.common.domain import Instance
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from services.common.rpc.convert import to_timestamp


def server_to_proto(instance: Instance) -> servers_pb2.Server:
    server = servers_pb2.Server(
        id=instance.uuid,
        name=instance.display_name,
        status=instance.status.value,
        vm_state=instance.vm_state.value,
        task_state=instance.task_state.value if instance.task_state else "",
        power_state=instance.power_state.name,
        project_id=instance.project_id,
        flavor_id=instance.flavor.id,
        flavor_name=instance.flavor.name,
        image_id=instance.image_id,
        reservation_id=instance.reservation_id,
        host=instance.host or "",
        metadata=instance.metadata,
        created_at=to_timestamp(instance.created_at),
        updated_at=to_timestamp(instance.updated_at),
        launched_at=to_timestamp(instance.launched_at),
    )
    if instance.fault is not None:
        server.fault.code = instance.fault.code
        server.fault.message = instance.fault.message
        server.fault.created_at.FromDatetime(instance.fault.created_at)
    return server


class ServersServicer(servers_pb2_grpc.ServersServicer):  # type: ignore[misc]
    def __init__(
        self,
        create: CreateServers,
        queries: ServerQueries,
        delete: DeleteServer,
        authenticator: Authenticator,
    ) -> None:
        self._create = create
        self._queries = queries
        self._delete = delete
        self._auth = authenticator

    async def _context(self, context: grpc.aio.ServicerContext[Any, Any]) -> RequestContext:
        identity = await self._auth.identify(context.invocation_metadata())
        return RequestContext(
            project_id=identity.project_id,
            request_id=current_request_id() or new_request_id(),
            is_admin=identity.is_admin,
        )

    async def CreateServer(
        self, request: servers_pb2.CreateServerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> servers_pb2.CreateServerResponse:
        command = CreateServerCommand(
            name=request.name,
            flavor_ref=request.flavor_ref,
            image_ref=request.image_ref,
            min_count=request.min_count if request.HasField("min_count") else None,
            max_count=request.max_count if request.HasField("max_count") else None,
            metadata=dict(request.metadata),
        )
        result = await self._create(command, await self._context(context))
        return servers_pb2.CreateServerResponse(
            server_ids=result.server_ids, reservation_id=result.reservation_id
        )

    async def GetServer(
        self, request: servers_pb2.GetServerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> servers_pb2.Server:
        return server_to_proto(await self._queries.get(request.id, await self._context(context)))

    async def ListServers(
        self, request: servers_pb2.ListServersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> servers_pb2.ListServersResponse:
        found = await self._queries.list(
            await self._context(context), reservation_id=request.reservation_id
        )
        return servers_pb2.ListServersResponse(servers=[server_to_proto(i) for i in found])

    async def DeleteServer(
        self, request: servers_pb2.DeleteServerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> empty_pb2.Empty:
        await self._delete(request.id, await self._context(context))
        return empty_pb2.Empty()
