"""The api service's composition root: builds and injects every adapter."""

from __future__ import annotations

import logging

from services.api.auth import Authenticator
from services.api.create import CreateServers
from services.api.delete import DeleteServer
from services.api.groups import ServerGroupUseCases
from services.api.queries import ServerQueries
from services.api.servicer import Identify, ServerGroupsServicer, ServersServicer
from services.api.settings import ApiSettings
from services.common.app import RunningService
from services.common.db.engine import Database
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from services.common.rpc.channels import ChannelPool
from services.common.rpc.conductor_client import BuildCaster, ConductorClient
from services.common.rpc.server import Registration, start_server

log = logging.getLogger("services.api")

SERVICE_NAME = servers_pb2.DESCRIPTOR.services_by_name["Servers"].full_name
GROUPS_SERVICE_NAME = servers_pb2.DESCRIPTOR.services_by_name["ServerGroups"].full_name


async def start_api(settings: ApiSettings) -> RunningService:
    db = Database(settings.database_url)
    channels = ChannelPool()
    caster = BuildCaster(channels, settings.conductor_addresses)
    create = CreateServers(db, caster)
    conductor = ConductorClient(channels, settings.conductor_addresses)
    identify = Identify(Authenticator(db, cache_seconds=settings.auth_cache_seconds))
    servicer = ServersServicer(create, ServerQueries(db), DeleteServer(db, conductor), identify)
    server = await start_server(
        settings.listen,
        [
            Registration(servers_pb2_grpc.add_ServersServicer_to_server, servicer, SERVICE_NAME),
            Registration(
                servers_pb2_grpc.add_ServerGroupsServicer_to_server,
                ServerGroupsServicer(ServerGroupUseCases(db), identify),
                GROUPS_SERVICE_NAME,
            ),
        ],
    )
    caster.start()
    create.start()

    async def close_db() -> None:
        db.close()

    service = RunningService(
        "api",
        server,
        settings.listen,
        closers=[create.close, caster.close, channels.close, close_db],
        grace=settings.shutdown_grace_seconds,
    )
    if not await db.ping():
        log.warning("the database does not answer yet; requests will fail until it does")
    await server.set_serving(True)
    log.info(
        "api serving on %s (conductors: %s)",
        service.address,
        ",".join(settings.conductor_addresses),
    )
    return service
