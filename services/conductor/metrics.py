"""The conductor's metrics."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS


@dataclass
class ConductorMetrics:
    scheduling_pass: Histogram
    schedule_delay: Histogram
    placed: Counter
    no_valid_host: Counter
    claim_conflicts: Counter
    events: Counter
    reconciler_actions: Counter
    instances: Gauge
    network_ports: Gauge
    rules_push: Histogram
    rules_push_failures: Counter
    oldest_build_age: Gauge
    compute_nodes: Gauge
    task_errors: Counter

    @staticmethod
    def create(registry: CollectorRegistry) -> ConductorMetrics:
        return ConductorMetrics(
            Histogram("nova_grpc_scheduling_pass_seconds",
                      "Time of one scheduling pass (load, filter, weigh, claim, commit).",
                      buckets=LATENCY_BUCKETS, registry=registry),
            Histogram("nova_grpc_schedule_delay_seconds",
                      "From an instance's creation to its placement on a host.",
                      buckets=LATENCY_BUCKETS, registry=registry),
            Counter("nova_grpc_instances_placed", "Instances placed on a host.",
                    registry=registry),
            Counter("nova_grpc_no_valid_host", "Instances no host could take.",
                    registry=registry),
            Counter("nova_grpc_claim_conflicts",
                    "Claims lost because another conductor claimed on the same host first "
                    "(the instances are placed again on fresh host states).",
                    registry=registry),
            Counter("nova_grpc_instance_events", "State reports from compute, by kind.",
                    ["kind"], registry=registry),
            Counter("nova_grpc_reconciler_actions", "What the reconciler did, by action.",
                    ["action"], registry=registry),
            Gauge("nova_grpc_instances", "Instances in the database, by vm_state.",
                  ["vm_state"], registry=registry),
            Gauge("nova_grpc_network_ports",
                  "Ports (so addresses in use) per network, and the network's pool size.",
                  ["network_id", "network", "kind"], registry=registry),
            Histogram("nova_grpc_port_rules_push_seconds",
                      "From a security-group change's coalesced push to every host's answer.",
                      buckets=LATENCY_BUCKETS, registry=registry),
            Counter("nova_grpc_port_rules_push_failures",
                    "Hosts a rules push did not reach (they converge at their next start).",
                    registry=registry),
            # what the stuck-in-BUILD alert reads: a count of building instances cannot tell
            # a steady stream of builds from one build that never ends
            Gauge("nova_grpc_oldest_build_age_seconds",
                  "Age of the oldest instance still building (0: none).", registry=registry),
            Gauge("nova_grpc_compute_nodes",
                  "Compute nodes by state: up, down (enabled, no heartbeat within "
                  "service_down_time) or disabled.", ["state"], registry=registry),
            Counter("nova_grpc_conductor_task_errors",
                    "Errors caught at a background task's boundary (logged with their "
                    "traceback), by task.", ["task"], registry=registry),
        )  # fmt: skip
