"""The public services: protobuf stops here; inside, plain dataclasses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.protobuf import empty_pb2

from services.api.admission import Admission
from services.api.auth import Authenticator
from services.api.context import RequestContext
from services.api.convert import action_to_proto, server_to_proto
from services.api.create import CreateServerCommand
from services.api.create_admission import CreateUseCase
from services.api.delete import DeleteServer
from services.api.paging import PageRequest
from services.api.power import PowerActions
from services.api.queries import ListQuery, ServerQueries
from services.api.rate_limit import RateLimiter
from services.api.watch import ServerWatch
from services.common.context import (
    current_request_id,
    new_request_id,
    rpc_method_var,
    tenant_var,
)
from services.common.domain import Instance, PowerAction, VmState
from services.common.errors import InvalidArgument
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from services.common.rpc.convert import from_timestamp

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


_REBOOT = servers_pb2.RebootServerRequest
# Unspecified is soft, as Nova's default; it is also what clients built before REBOOT_TYPE_SOFT
# existed send for a soft reboot (their SOFT was 0).
_REBOOT_TYPES: dict[int, PowerAction] = {
    _REBOOT.REBOOT_TYPE_UNSPECIFIED: PowerAction.REBOOT_SOFT,
    _REBOOT.REBOOT_TYPE_SOFT: PowerAction.REBOOT_SOFT,
    _REBOOT.REBOOT_TYPE_HARD: PowerAction.REBOOT_HARD,
}
_CHANGE_KINDS = {
    "snapshot": servers_pb2.SERVER_CHANGE_KIND_SNAPSHOT,
    "update": servers_pb2.SERVER_CHANGE_KIND_UPDATE,
    "deleted": servers_pb2.SERVER_CHANGE_KIND_DELETED,
}
_STATUS_STATES: dict[int, tuple[VmState, ...]] = {
    servers_pb2.SERVER_STATUS_BUILD: (VmState.BUILDING,),
    servers_pb2.SERVER_STATUS_ACTIVE: (VmState.ACTIVE,),
    servers_pb2.SERVER_STATUS_ERROR: (VmState.ERROR,),
    servers_pb2.SERVER_STATUS_DELETED: (VmState.DELETED,),
    servers_pb2.SERVER_STATUS_SHUTOFF: (VmState.STOPPED,),
}


class Identify:
    """Turns a call's bearer token into a RequestContext (shared by the public servicers),
    charges the call to its project's rate limit and counts it against the project's calls
    (or streams) in flight until it ends."""

    def __init__(
        self,
        authenticator: Authenticator,
        limiter: RateLimiter | None = None,
        admission: Admission | None = None,
    ) -> None:
        self._auth = authenticator
        self._limiter = limiter or RateLimiter(0)
        self._admission = admission or Admission(calls_per_project=0, streams_per_project=0)

    async def __call__(self, context: Context, *, stream: bool = False) -> RequestContext:
        identity = await self._auth.identify(context.invocation_metadata())
        identity.check_method(rpc_method_var.get())
        self._limiter.check(identity.project_id)
        tenant_var.set(identity.project_id)  # this call's reads queue as its project's
        release = self._admission.enter(identity.project_id, stream=stream)
        context.add_done_callback(lambda _: release())
        return RequestContext(
            project_id=identity.project_id,
            request_id=current_request_id() or new_request_id(),
            is_admin=identity.is_admin,
        )


@dataclass(frozen=True, slots=True)
class ServerUseCases:
    create: CreateUseCase
    queries: ServerQueries
    delete: DeleteServer
    power: PowerActions
    watch: ServerWatch


class ServersServicer(servers_pb2_grpc.ServersServicer):  # type: ignore[misc]
    def __init__(self, use_cases: ServerUseCases, identify: Identify) -> None:
        self._create = use_cases.create
        self._queries = use_cases.queries
        self._delete = use_cases.delete
        self._power = use_cases.power
        self._watch = use_cases.watch
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
            description=request.description,
            key_name=request.key_name,
            user_data=request.user_data,
            admin_password=request.admin_password,
            networks=list(request.networks),
            security_groups=list(request.security_groups),
            tags=list(request.tags),
            client_request_id=request.client_request_id,
            block_devices=[
                (b.source_type, b.destination_type, b.volume_size)
                for b in request.block_device_mapping
            ],
            nics=[(n.network, n.fixed_ip) for n in request.nics],
            config_drive=request.config_drive,
        )
        result = await self._create(command, await self._identify(context))
        return servers_pb2.CreateServerResponse(
            server_ids=result.server_ids,
            reservation_id=result.reservation_id,
            admin_password=result.admin_password,
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
        query = ListQuery(
            reservation_id=request.reservation_id,
            name=request.name,
            vm_states=_STATUS_STATES.get(request.status, ()),
            flavor=request.flavor,
            image=request.image,
            tags=tuple(request.tags),
            changes_since=from_timestamp(request.changes_since)
            if request.HasField("changes_since")
            else None,
            host=request.host,
            all_projects=request.all_projects,
            # limit is page_size's deprecated name; older clients still send it.
            page_size=request.page_size or request.limit,
            page_token=request.page_token,
            page_size_field="page_size" if request.page_size else "limit",
        )
        admin = caller.is_admin

        def present(instance: Instance) -> servers_pb2.Server:
            # runs on the database thread: a page of 1,000 must not hold the event loop
            return server_to_proto(instance, admin=admin)

        servers, next_token = await self._queries.search(caller, query, present)
        return servers_pb2.ListServersResponse(servers=servers, next_page_token=next_token)

    async def DeleteServer(
        self, request: servers_pb2.DeleteServerRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._delete(request.id, await self._identify(context))
        return empty_pb2.Empty()

    async def ListServerActions(
        self, request: servers_pb2.ListServerActionsRequest, context: Context
    ) -> servers_pb2.ListServerActionsResponse:
        caller = await self._identify(context)
        paging = PageRequest(request.page_size, request.page_token)
        found, next_token = await self._queries.actions(request.server_id, caller, paging)
        return servers_pb2.ListServerActionsResponse(
            actions=[action_to_proto(a, admin=caller.is_admin) for a in found],
            next_page_token=next_token,
        )

    async def StartServer(
        self, request: servers_pb2.StartServerRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._power(request.id, PowerAction.START, await self._identify(context))
        return empty_pb2.Empty()

    async def StopServer(
        self, request: servers_pb2.StopServerRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._power(request.id, PowerAction.STOP, await self._identify(context))
        return empty_pb2.Empty()

    async def RebootServer(
        self, request: servers_pb2.RebootServerRequest, context: Context
    ) -> empty_pb2.Empty:
        action = _REBOOT_TYPES.get(request.type)
        if action is None:
            raise InvalidArgument("type", f"unknown reboot type {request.type}")
        await self._power(request.id, action, await self._identify(context))
        return empty_pb2.Empty()

    async def WatchServers(
        self, request: servers_pb2.WatchServersRequest, context: Context
    ) -> AsyncIterator[servers_pb2.ServerEvent]:
        caller = await self._identify(context, stream=True)
        async for instance, change, token in self._watch.watch(
            caller, server_id=request.server_id, reservation_id=request.reservation_id,
            resume_token=request.resume_token,
        ):  # fmt: skip
            yield servers_pb2.ServerEvent(
                server=server_to_proto(instance, admin=caller.is_admin),
                change=change,  # still filled for clients built before kind
                kind=_CHANGE_KINDS[change],
                resume_token=token,
            )
