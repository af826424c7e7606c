"""Compute's metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class ComputeMetrics:
    builds: Counter
    build_seconds: Histogram

    @staticmethod
    def create(
        registry: CollectorRegistry, *, queued: Callable[[], float], running: Callable[[], float]
    ) -> ComputeMetrics:
        Gauge("nova_grpc_builds_queued", "Builds waiting for a slot.",
              registry=registry).set_function(queued)  # fmt: skip
        Gauge("nova_grpc_builds_running", "Builds running now.",
              registry=registry).set_function(running)  # fmt: skip
        return ComputeMetrics(
            Counter("nova_grpc_builds", "Finished builds, by outcome.", ["outcome"],
                    registry=registry),
            Histogram("nova_grpc_build_seconds", "Time from slot to running domain.",
                      buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
                      registry=registry),
        )  # fmt: skip
