"""The api service's composition root: builds and injects every adapter."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from services.api.account_servicers import (
    ComputeServicesServicer,
    KeypairsServicer,
    QuotasServicer,
)
from services.api.admission import Admission
from services.api.auth import Authenticator
from services.api.catalog import FlavorUseCases, ImageUseCases
from services.api.catalog_servicer import FlavorsServicer, ImagesServicer
from services.api.compute_services import ComputeServiceUseCases
from services.api.consoles import ConsoleLocator, ConsoleOutputs, ConsoleSessions, OpenConsoles
from services.api.consoles_servicer import ConsolesServicer
from services.api.create import CreateServers
from services.api.create_admission import CreateBudget, FairCreates
from services.api.delete import DeleteServer
from services.api.external_networks import ExternalNetworkUseCases
from services.api.external_networks_servicer import ExternalNetworksServicer, FloatingIPsServicer
from services.api.floating_ips import FloatingIPUseCases
from services.api.groups import ServerGroupUseCases
from services.api.groups_servicer import ServerGroupsServicer
from services.api.host_networks_notify import ConductorHostNetworks
from services.api.keypairs import KeypairUseCases
from services.api.networks import NetworkUseCases
from services.api.networks_servicer import NetworksServicer
from services.api.power import PowerActions
from services.api.queries import ServerQueries
from services.api.quotas import QuotaUseCases
from services.api.rate_limit import RateLimiter
from services.api.rules_fan_out import ConductorRulesFanOut
from services.api.security_groups import SecurityGroupUseCases
from services.api.security_groups_servicer import SecurityGroupsServicer
from services.api.servicer import Identify, ServersServicer, ServerUseCases
from services.api.settings import ApiSettings
from services.api.watch import ServerWatch
from services.common.app import RunningService
from services.common.db.engine import Database
from services.common.db.stores import SqlUnitOfWork
from services.common.generated.novagrpc.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    compute_services_pb2,
    compute_services_pb2_grpc,
    consoles_pb2,
    consoles_pb2_grpc,
    external_networks_pb2,
    external_networks_pb2_grpc,
    floating_ips_pb2,
    floating_ips_pb2_grpc,
    keypairs_pb2,
    keypairs_pb2_grpc,
    networks_pb2,
    networks_pb2_grpc,
    quotas_pb2,
    quotas_pb2_grpc,
    security_groups_pb2,
    security_groups_pb2_grpc,
    server_groups_pb2,
    server_groups_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
)
from services.common.identity import ServiceIdentity, ServiceRole
from services.common.metrics import MetricsServer, RpcMetrics
from services.common.readiness import Readiness
from services.common.rpc.channels import ChannelPool
from services.common.rpc.conductor_client import BuildCaster, ConductorClient
from services.common.rpc.console_client import ComputeConsoleClient
from services.common.rpc.datapath import HostNetworksRefresher
from services.common.rpc.server import Registration, start_server
from services.common.stream_turns import StreamTurns

if TYPE_CHECKING:
    from services.api.oidc import OidcVerifier

log = logging.getLogger("services.api")


def _name(module: object, service: str) -> str:
    return str(module.DESCRIPTOR.services_by_name[service].full_name)  # type: ignore[attr-defined]


SERVICE_NAME = _name(servers_pb2, "Servers")


def oidc_verifier(settings: ApiSettings) -> OidcVerifier | None:
    if not settings.oidc_issuer:
        return None
    # imported here: PyJWT loads cryptography (~10 MiB), which an api without OIDC never needs
    from services.api.oidc import JwksSource, OidcVerifier  # noqa: PLC0415

    keys = JwksSource(
        file=settings.oidc_jwks_file,
        url=settings.oidc_jwks_url,
        cache_seconds=settings.oidc_jwks_cache_seconds.total_seconds(),
    )
    return OidcVerifier(
        keys,
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience,
        project_claim=settings.oidc_project_claim,
        roles_claim=settings.oidc_roles_claim,
        default_role=settings.oidc_default_role,
        leeway=settings.oidc_leeway_seconds,
    )


async def start_api(settings: ApiSettings) -> RunningService:
    # The event loop shares the interpreter with the database threads: see switch_interval_ms.
    sys.setswitchinterval(settings.switch_interval_ms / 1000)
    # first: its own certificate must name the api (a misdeployment stops the start)
    tls = settings.internal_client_tls(identity=ServiceIdentity(ServiceRole.API))
    # a read is stopped when its call's deadline passes (or its client goes away)
    db = Database(
        settings.database_url,
        read_timeout=settings.rpc_deadline_seconds.total_seconds(),
        fair_reads=True,
        reads_per_tenant=settings.read_threads_per_project,
        wal_checkpoints=settings.sqlite_checkpoint_interval,
    )
    uow = SqlUnitOfWork(db)
    registry = CollectorRegistry()
    channels = ChannelPool(tls)
    caster = BuildCaster(
        channels, settings.conductor_addresses, streams_per_address=settings.conductor_streams
    )
    create = CreateServers(
        uow,
        caster,
        quota_defaults=settings.default_quotas,
        batch_servers=settings.create_batch_servers,
    )
    conductor = ConductorClient(channels, settings.conductor_addresses)
    admission = Admission(
        calls_per_project=settings.max_calls_per_project,
        streams_per_project=settings.max_streams_per_project,
    )
    identify = Identify(
        Authenticator(
            db,
            cache_seconds=settings.auth_cache_seconds.total_seconds(),
            oidc=oidc_verifier(settings),
        ),
        RateLimiter(settings.rate_limit_per_second),
        admission,
    )
    queries = ServerQueries(
        uow,
        others_busy=admission.others_in_flight,
        expensive_share=settings.expensive_call_share,
        writer_held=lambda: db.writing,
    )
    watch = ServerWatch(
        uow,
        pacer=queries.pacer,
        turns=StreamTurns(
            admission.others_in_flight,
            share=settings.expensive_call_share,
            held=lambda: db.writing,
        ),
    )
    rules_fan_out = ConductorRulesFanOut(conductor)
    host_networks = ConductorHostNetworks(
        HostNetworksRefresher(channels, settings.conductor_addresses)
    )
    servers = ServersServicer(
        ServerUseCases(
            FairCreates(
                create,
                CreateBudget(
                    settings.create_servers_per_project,
                    others_busy=admission.others_in_flight,
                    share=settings.create_share,
                ),
            ),
            queries,
            DeleteServer(uow, conductor), PowerActions(uow, conductor),
            watch,
        ),
        identify,
    )  # fmt: skip
    down = settings.service_down_time
    console_client = ComputeConsoleClient(
        channels, timeout=settings.console_timeout_seconds.total_seconds()
    )
    locate = ConsoleLocator(uow)
    consoles = ConsolesServicer(
        ConsoleOutputs(locate, console_client),
        ConsoleSessions(
            locate, console_client, OpenConsoles(settings.console_sessions_per_project)
        ),
        identify,
    )
    registrations = [
        Registration(servers_pb2_grpc.add_ServersServicer_to_server, servers, SERVICE_NAME),
        Registration(
            server_groups_pb2_grpc.add_ServerGroupsServicer_to_server,
            ServerGroupsServicer(ServerGroupUseCases(uow), identify),
            _name(server_groups_pb2, "ServerGroups"),
        ),
        Registration(
            catalog_pb2_grpc.add_FlavorsServicer_to_server,
            FlavorsServicer(FlavorUseCases(uow), identify),
            _name(catalog_pb2, "Flavors"),
        ),
        Registration(
            catalog_pb2_grpc.add_ImagesServicer_to_server,
            ImagesServicer(ImageUseCases(uow, Path(settings.image_store_path)), identify),
            _name(catalog_pb2, "Images"),
        ),
        Registration(
            keypairs_pb2_grpc.add_KeypairsServicer_to_server,
            KeypairsServicer(KeypairUseCases(uow), identify),
            _name(keypairs_pb2, "Keypairs"),
        ),
        Registration(
            networks_pb2_grpc.add_NetworksServicer_to_server,
            NetworksServicer(NetworkUseCases(uow), identify),
            _name(networks_pb2, "Networks"),
        ),
        Registration(
            security_groups_pb2_grpc.add_SecurityGroupsServicer_to_server,
            # The conductor fan-out lands with the datapath: until then rule changes reach
            # no host (the explicit no-op).
            SecurityGroupsServicer(SecurityGroupUseCases(uow, rules_fan_out), identify),
            _name(security_groups_pb2, "SecurityGroups"),
        ),
        Registration(
            external_networks_pb2_grpc.add_ExternalNetworksServicer_to_server,
            ExternalNetworksServicer(ExternalNetworkUseCases(db, host_networks), identify),
            _name(external_networks_pb2, "ExternalNetworks"),
        ),
        Registration(
            floating_ips_pb2_grpc.add_FloatingIPsServicer_to_server,
            FloatingIPsServicer(FloatingIPUseCases(db, host_networks), identify),
            _name(floating_ips_pb2, "FloatingIPs"),
        ),
        Registration(
            quotas_pb2_grpc.add_QuotasServicer_to_server,
            QuotasServicer(QuotaUseCases(uow, settings.default_quotas), identify),
            _name(quotas_pb2, "Quotas"),
        ),
        Registration(
            compute_services_pb2_grpc.add_ComputeServicesServicer_to_server,
            ComputeServicesServicer(ComputeServiceUseCases(uow, service_down_time=down), identify),
            _name(compute_services_pb2, "ComputeServices"),
        ),
        Registration(
            consoles_pb2_grpc.add_ConsolesServicer_to_server,
            consoles,
            _name(consoles_pb2, "Consoles"),
        ),
    ]
    server = await start_server(
        settings.listen,
        registrations,
        credentials=settings.public_credentials(),
        metrics=RpcMetrics.create(registry),
        unary_deadline=settings.rpc_deadline_seconds,
    )
    metrics_server = MetricsServer(registry, settings.metrics_listen)
    readiness = Readiness(server, [("database", db.ping)], interval=settings.readiness_interval)
    caster.start()
    create.start()

    async def close_db() -> None:
        db.close()

    service = RunningService(
        "api",
        server,
        settings.listen,
        closers=[
            readiness.close,
            watch.close,
            rules_fan_out.close,
            host_networks.close,
            create.close,
            caster.close,
            channels.close,
            close_db,
            metrics_server.close,
        ],
        grace=settings.shutdown_grace_seconds.total_seconds(),
    )
    await readiness.check_once()
    readiness.start()
    log.info(
        "api serving on %s (conductors: %s)",
        service.address,
        ",".join(settings.conductor_addresses),
    )
    return service
