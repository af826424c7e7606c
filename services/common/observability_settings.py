"""Settings every service shares for being watched: metrics port and log format."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import require, setting


@dataclass(frozen=True)
class ObservabilitySettings:
    metrics_listen: str = setting(
        "", "host:port of the Prometheus /metrics HTTP endpoint (empty: no endpoint)."
    )
    log_format: str = setting("text", "Log lines as readable text or as JSON (text | json).")

    def check_observability(self) -> None:
        require(self.log_format in ("text", "json"), "log_format", "must be text or json")
        require(
            not self.metrics_listen or ":" in self.metrics_listen,
            "metrics_listen",
            "must be host:port",
        )
