"""Settings every service shares for being watched: metrics port, log format, readiness."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import require, setting


@dataclass(frozen=True)
class ObservabilitySettings:
    metrics_listen: str = setting(
        "", "host:port of the Prometheus /metrics HTTP endpoint (empty: no endpoint)."
    )
    log_format: str = setting("text", "Log lines as readable text or as JSON (text | json).")
    readiness_interval: float = setting(
        5.0,
        "Seconds between readiness checks of the service's dependencies (database, libvirt): "
        "how soon health follows an outage and a recovery.",
    )

    def check_observability(self) -> None:
        require(self.log_format in ("text", "json"), "log_format", "must be text or json")
        require(self.readiness_interval > 0, "readiness_interval", "must be > 0")
        require(
            not self.metrics_listen or ":" in self.metrics_listen,
            "metrics_listen",
            "must be host:port",
        )
