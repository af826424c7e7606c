"""The conductor service's composition root: builds and injects every adapter."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from services.common.app import RunningService
from services.common.db.build_store import SqlBuildTransactions, SqlEventTransactions
from services.common.db.engine import Database
from services.common.db.stores import SqlUnitOfWork
from services.common.generated.novagrpc.internal.v1 import (
    conductor_pb2,
    conductor_pb2_grpc,
    datapath_pb2_grpc,
)
from services.common.identity import ServiceIdentity, ServiceRole
from services.common.metrics import MetricsServer, RpcMetrics
from services.common.readiness import Readiness
from services.common.rpc.channels import ChannelPool
from services.common.rpc.compute_client import ComputeClient
from services.common.rpc.datapath import HostStatePusher
from services.common.rpc.server import Registration, start_server
from services.conductor.build_task import BuildTask
from services.conductor.datapath_servicer import CALLERS as DATAPATH_CALLERS
from services.conductor.datapath_servicer import SERVICE_NAME as DATAPATH_SERVICE
from services.conductor.datapath_servicer import ConductorDatapathServicer
from services.conductor.deletes import DeleteInstances
from services.conductor.events import EventPolicy, EventRecorder, InstanceEvents
from services.conductor.host_networks import HostNetworkFanOut, HostNetworkMetrics
from services.conductor.host_scope import HostScope
from services.conductor.metrics import ConductorMetrics
from services.conductor.nodes import ComputeNodes
from services.conductor.port_rules import PortRulesFanOut
from services.conductor.power import PowerActions
from services.conductor.reconciler import InstanceCensus, ReconcilePolicy, Reconciler
from services.conductor.scheduler.registry import build_filters, build_weighers, parse_weights
from services.conductor.scheduler.scheduler import Scheduler
from services.conductor.servicer import CALLERS, ConductorServicer
from services.conductor.settings import ConductorSettings
from services.conductor.streams import BuildStreams

log = logging.getLogger("services.conductor")

SERVICE_NAME = conductor_pb2.DESCRIPTOR.services_by_name["Conductor"].full_name


async def start_conductor(settings: ConductorSettings) -> RunningService:
    # first: its own certificate must name the conductor (a misdeployment stops the start)
    tls = settings.internal_client_tls(identity=ServiceIdentity(ServiceRole.CONDUCTOR))
    db = Database(settings.database_url, wal_checkpoints=settings.sqlite_checkpoint_interval)
    uow = SqlUnitOfWork(db)
    registry = CollectorRegistry()
    metrics = ConductorMetrics.create(registry)
    channels = ChannelPool(tls)
    scheduler = Scheduler(
        build_filters(settings.enabled_filters),
        build_weighers(parse_weights(settings.weights)),
        host_subset_size=settings.host_subset_size,
        max_attempts=settings.max_attempts,
    )
    computes = ComputeClient(channels, timeout=settings.build_rpc_timeout.total_seconds())
    port_rules = PortRulesFanOut(uow, computes, metrics=metrics)
    host_networks = HostNetworkFanOut(
        db, HostStatePusher(channels), metrics=HostNetworkMetrics.create(registry)
    )

    def servers_came_or_went(uuids: Sequence[str]) -> None:
        port_rules.servers_came_or_went(uuids)
        host_networks.servers_came_or_went(uuids)

    # Compute's reports and dispatch's unsendable builds are written by one recorder; the
    # builds it moves go back to dispatch: recorder -> build path -> batched reports.
    recorder = EventRecorder(
        SqlEventTransactions(db),
        EventPolicy(
            max_attempts=settings.max_attempts,
            service_down_time=settings.service_down_time,
        ),
        metrics=metrics,
        servers_came_or_went=servers_came_or_went,
    )
    builds = BuildTask(
        SqlBuildTransactions(db),
        computes,
        scheduler,
        service_down_time=settings.service_down_time,
        reschedule=recorder.record,
        batch_size=settings.schedule_batch_size,
        metrics=metrics,
    )
    events = InstanceEvents(recorder, dispatch=builds.dispatch)
    deletes = DeleteInstances(uow, computes, servers_went=servers_came_or_went)
    streams = BuildStreams(max_age=settings.build_stream_max_age.total_seconds() or None)
    servicer = ConductorServicer(
        builds, events, ComputeNodes(uow), deletes=deletes, power=PowerActions(uow, computes),
        port_rules=port_rules, streams=streams, scope=HostScope(uow),
    )  # fmt: skip
    reconciler = Reconciler(
        uow,
        schedule=builds.submit,
        redispatch=builds.redispatch,
        finish_deletes=deletes,
        report_failures=events.apply,
        policy=ReconcilePolicy(
            interval=settings.reconcile_interval.total_seconds(),
            scheduling_grace=settings.scheduling_grace,
            service_down_time=settings.service_down_time,
            instance_build_timeout=settings.instance_build_timeout,
            power_action_timeout=settings.power_action_timeout,
        ),
        metrics=metrics,
    )
    server = await start_server(
        settings.listen,
        [
            Registration(
                conductor_pb2_grpc.add_ConductorServicer_to_server, servicer, SERVICE_NAME
            ),
            Registration(
                datapath_pb2_grpc.add_ConductorDatapathServicer_to_server,
                ConductorDatapathServicer(host_networks),
                DATAPATH_SERVICE,
            ),
        ],
        credentials=settings.internal_server_credentials(
            identity=ServiceIdentity(ServiceRole.CONDUCTOR)
        ),
        callers={**CALLERS, **DATAPATH_CALLERS} if tls is not None else None,
        metrics=RpcMetrics.create(registry),
        health_listen=settings.health_listen,
        max_connection_age=settings.connection_age(),
        max_connection_age_grace=settings.connection_age_grace(),
    )
    metrics_server = MetricsServer(registry, settings.metrics_listen)
    census = InstanceCensus(uow, metrics, service_down_time=settings.service_down_time)
    readiness = Readiness(server, [("database", db.ping)], interval=settings.readiness_interval)
    builds.start()
    events.start()
    port_rules.start()
    host_networks.start()
    reconciler.start()
    census.start()

    async def close_db() -> None:
        db.close()

    async def drain_streams() -> None:
        await streams.end_all(timeout=settings.shutdown_grace_seconds.total_seconds())

    async def drain_builds() -> None:
        await builds.drain(timeout=settings.shutdown_grace_seconds.total_seconds())

    service = RunningService(
        "conductor",
        server,
        settings.listen,
        # the api sends what the streams did not read to another conductor; what they did
        # is placed and sent to its hosts before this one stops (the reconciler of another
        # conductor re-drives anything left after scheduling_grace)
        draining=[drain_streams, drain_builds],
        closers=[
            readiness.close,
            census.close,
            reconciler.close,
            events.close,
            port_rules.close,
            host_networks.close,
            builds.close,
            channels.close,
            close_db,
            metrics_server.close,
        ],
        grace=settings.shutdown_grace_seconds.total_seconds(),
    )
    await readiness.check_once()
    readiness.start()
    log.info("conductor serving on %s", service.address)
    return service
