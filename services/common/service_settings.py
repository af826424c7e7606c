"""The settings every service repeats: internal TLS, metrics, logging, readiness (which health
follows) and the ready file. Each service's settings extend this base (it is a frozen
dataclass, so its fields come first in each service's flags and reference)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from services.common.config import require, setting
from services.common.tls_settings import InternalTlsSettings


@dataclass(frozen=True)
class ServiceSettings(InternalTlsSettings):
    metrics_listen: str = setting(
        "", "host:port of the Prometheus /metrics HTTP endpoint (empty: no endpoint)."
    )
    log_format: str = setting("text", "Log lines as readable text or as JSON (text | json).")
    log_level: str = setting("INFO", "Logging level: DEBUG, INFO, WARNING or ERROR.")
    readiness_interval: timedelta = setting(
        timedelta(seconds=5),
        "Seconds between readiness checks of the service's dependencies (database, libvirt): "
        "how soon health follows an outage and a recovery.",
    )
    gc_young_objects: int = setting(
        20_000,
        "Allocations between two collections of Python's youngest generation (Python's "
        "default: 700); older generations are collected more rarely still. Fewer, later "
        "collections keep long pauses out of every call's latency (services.common.gc_tuning).",
    )
    ready_file: str = setting(
        "", "When set, the bound address is written here once the service is serving."
    )

    def check_service(self) -> None:
        """Each service's ``__post_init__`` calls this along with its own checks."""
        require(self.log_format in ("text", "json"), "log_format", "must be text or json")
        require(self.readiness_interval > timedelta(0), "readiness_interval", "must be > 0")
        require(self.gc_young_objects >= 700, "gc_young_objects", "must be >= 700")
        require(
            not self.metrics_listen or ":" in self.metrics_listen,
            "metrics_listen",
            "must be host:port",
        )
        self.check_internal_tls()
