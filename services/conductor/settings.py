"""The conductor service's settings."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import require, setting
from services.common.connection_settings import ConnectionAgeSettings
from services.common.observability_settings import ObservabilitySettings
from services.common.tls_settings import InternalTlsSettings
from services.conductor.scheduler.registry import (
    DEFAULT_FILTERS,
    DEFAULT_WEIGHTS,
    build_filters,
    parse_weights,
)

DEFAULT_DATABASE_URL = "sqlite:///var/nova.sqlite"


@dataclass(frozen=True)
class ConductorSettings(ObservabilitySettings, InternalTlsSettings, ConnectionAgeSettings):
    listen: str = setting(
        "127.0.0.1:8780", "Address the internal Conductor service listens on (host:port)."
    )
    database_url: str = setting(
        DEFAULT_DATABASE_URL, "SQLAlchemy URL of the database (sqlite:///path or postgresql://...)."
    )
    service_down_time: float = setting(
        60.0, "Seconds without a heartbeat after which a compute node counts as down (Nova: 60)."
    )
    enabled_filters: tuple[str, ...] = setting(
        DEFAULT_FILTERS, "Scheduler filters, in order (comma-separated names)."
    )
    weights: tuple[str, ...] = setting(
        DEFAULT_WEIGHTS, "Scheduler weighers and multipliers: Name=multiplier, comma-separated."
    )
    host_subset_size: int = setting(
        1, "Choose at random among this many best hosts (spreads concurrent requests)."
    )
    max_attempts: int = setting(
        3, "Build attempts per instance: the chosen host plus max_attempts - 1 alternates."
    )
    schedule_batch_size: int = setting(
        500, "Most instances placed in one scheduling pass (one host-state load, one commit)."
    )
    build_rpc_timeout: float = setting(
        10.0, "Deadline in seconds of each BuildAndRunInstance call to a compute service."
    )
    reconcile_interval: float = setting(
        15.0, "Seconds between reconciler passes (stuck casts, deletes, builds, power actions)."
    )
    scheduling_grace: float = setting(
        30.0,
        "Seconds an instance may wait in scheduling (or a delete in deleting) before the "
        "reconciler re-drives it.",
    )
    instance_build_timeout: float = setting(
        600.0, "Seconds after which an unfinished build ends in ERROR (Nova's default: 600)."
    )
    power_action_timeout: float = setting(
        300.0, "Seconds after which an unfinished start/stop/reboot is given back."
    )
    build_stream_max_age: float = setting(
        30.0,
        "Seconds (+- 20 %) after which the conductor ends an api's build stream; the api opens "
        "its next one, maybe on another conductor, and sends there what this one did not "
        "read. How soon a conductor added gets builds; 0: never.",
    )
    health_listen: str = setting(
        "",
        "host:port of a plaintext gRPC port serving only health (for kubelet's probes, "
        "which cannot present a client certificate); empty: none.",
    )
    ready_file: str = setting(
        "", "When set, the bound address is written here once the service is serving."
    )
    shutdown_grace_seconds: float = setting(
        5.0, "How long in-flight RPCs may run after SIGTERM before they are cancelled."
    )
    log_level: str = setting("INFO", "Logging level: DEBUG, INFO, WARNING or ERROR.")

    def __post_init__(self) -> None:
        self._check()
        self.check_observability()
        self.check_internal_tls()
        self.check_connection_age()
        require(self.build_stream_max_age >= 0, "build_stream_max_age", "must be >= 0")
        # a stream must end (and its unread casts move) before its connection's grace cuts it
        require(
            not self.build_stream_max_age
            or not self.max_connection_age
            or self.build_stream_max_age * 1.2 < self.max_connection_age_grace,
            "build_stream_max_age",
            "must be under max_connection_age_grace / 1.2 (a stream ends before it is cut)",
        )

    def _check(self) -> None:
        require(":" in self.listen, "listen", "must be host:port")
        require(self.service_down_time > 0, "service_down_time", "must be > 0")
        require(self.schedule_batch_size >= 1, "schedule_batch_size", "must be >= 1")
        require(self.host_subset_size >= 1, "host_subset_size", "must be >= 1")
        require(self.max_attempts >= 1, "max_attempts", "must be >= 1")
        try:
            build_filters(self.enabled_filters)
        except ValueError as exc:
            require(False, "enabled_filters", str(exc))
        try:
            parse_weights(self.weights)
        except ValueError as exc:
            require(False, "weights", str(exc))
        require(self.build_rpc_timeout > 0, "build_rpc_timeout", "must be > 0")
        require(self.shutdown_grace_seconds >= 0, "shutdown_grace_seconds", "must be >= 0")
        for name in ("reconcile_interval", "scheduling_grace", "instance_build_timeout",
                     "power_action_timeout"):  # fmt: skip
            require(getattr(self, name) > 0, name, "must be > 0")
