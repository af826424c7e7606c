"""The conductor service's settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from services.common.addresses import require_listen
from services.common.config import require, setting
from services.common.connection_settings import ConnectionAgeSettings
from services.common.service_settings import ServiceSettings
from services.conductor.scheduler.registry import (
    DEFAULT_FILTERS,
    DEFAULT_WEIGHTS,
    build_filters,
    parse_weights,
)

DEFAULT_DATABASE_URL = "sqlite:///var/nova.sqlite"


@dataclass(frozen=True)
class ConductorSettings(ServiceSettings, ConnectionAgeSettings):
    listen: str = setting(
        "127.0.0.1:8780",
        "Address the internal Conductor service listens on: host:port, or unix:/absolute/path "
        "for a unix-domain socket (computes on this machine in another network namespace).",
    )
    database_url: str = setting(
        DEFAULT_DATABASE_URL, "SQLAlchemy URL of the database (sqlite:///path or postgresql://...)."
    )
    sqlite_checkpoint_interval: timedelta = setting(
        timedelta(seconds=1),
        "On SQLite, seconds between checkpoints of its write-ahead log, taken on a thread of "
        "their own instead of inside whichever commit finds the log long (which held the one "
        "writer up to 100 ms).",
    )
    service_down_time: timedelta = setting(
        timedelta(seconds=60),
        "Seconds without a heartbeat after which a compute node counts as down (Nova: 60).",
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
    build_rpc_timeout: timedelta = setting(
        timedelta(seconds=10),
        "Deadline in seconds of each BuildAndRunInstance call to a compute service.",
    )
    reconcile_interval: timedelta = setting(
        timedelta(seconds=15),
        "Seconds between reconciler passes (stuck casts, deletes, builds, power actions).",
    )
    scheduling_grace: timedelta = setting(
        timedelta(seconds=30),
        "Seconds an instance may wait in scheduling (or a delete in deleting) before the "
        "reconciler re-drives it.",
    )
    instance_build_timeout: timedelta = setting(
        timedelta(seconds=600),
        "Seconds after which an unfinished build ends in ERROR (Nova's default: 600).",
    )
    power_action_timeout: timedelta = setting(
        timedelta(seconds=300), "Seconds after which an unfinished start/stop/reboot is given back."
    )
    build_stream_max_age: timedelta = setting(
        timedelta(seconds=30),
        "Seconds (+- 20 %) after which the conductor ends an api's build stream; the api opens "
        "its next one, maybe on another conductor, and sends there what this one did not "
        "read. How soon a conductor added gets builds; 0: never.",
    )
    health_listen: str = setting(
        "",
        "host:port of a plaintext gRPC port serving only health (for kubelet's probes, "
        "which cannot present a client certificate); empty: none.",
    )
    shutdown_grace_seconds: timedelta = setting(
        timedelta(seconds=5),
        "How long in-flight RPCs may run after SIGTERM before they are cancelled.",
    )

    def __post_init__(self) -> None:
        self._check()
        self.check_service()
        self.check_connection_age()
        require(self.build_stream_max_age >= timedelta(0), "build_stream_max_age", "must be >= 0")
        # a stream must end (and its unread casts move) before its connection's grace cuts it
        require(
            not self.build_stream_max_age
            or not self.max_connection_age
            or self.build_stream_max_age * 1.2 < self.max_connection_age_grace,
            "build_stream_max_age",
            "must be under max_connection_age_grace / 1.2 (a stream ends before it is cut)",
        )

    def _check(self) -> None:
        require_listen("listen", self.listen)
        require(self.service_down_time > timedelta(0), "service_down_time", "must be > 0")
        require(
            self.sqlite_checkpoint_interval > timedelta(0),
            "sqlite_checkpoint_interval",
            "must be > 0",
        )
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
        require(self.build_rpc_timeout > timedelta(0), "build_rpc_timeout", "must be > 0")
        require(
            self.shutdown_grace_seconds >= timedelta(0), "shutdown_grace_seconds", "must be >= 0"
        )
        for name in ("reconcile_interval", "scheduling_grace", "instance_build_timeout",
                     "power_action_timeout"):  # fmt: skip
            require(getattr(self, name) > timedelta(0), name, "must be > 0")
