"""Metrics move when work is done, and one request id can be followed through the logs of
all three processes (JSON lines)."""

from __future__ import annotations

import contextlib
import json
import re
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli.manage import issue_token
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from tests.support.polling import wait_until
from tests.support.processes import ServiceSet

pytestmark = pytest.mark.timeout(120)


def scrape(address: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def metric(values: dict[str, float], prefix: str, **labels: str) -> float:
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in values.items() if k.startswith(prefix) and all(w in k for w in wanted))


def check_metrics(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> None:
    """What one create of two servers and one GetServer of a missing id moved."""

    def moved(service: str, prefix: str, **labels: str) -> float:
        return metric(after[service], prefix, **labels) - metric(before[service], prefix, **labels)

    # gRPC metrics under go-grpc-prometheus's names and labels (stock dashboards read them)
    servers = {"grpc_type": "unary", "grpc_service": "novagrpc.v1.Servers"}
    create = {**servers, "grpc_method": "CreateServer"}
    assert moved("api", "grpc_server_started_total", **create) == 1
    assert moved("api", "grpc_server_handled_total", **create, grpc_code="OK") == 1
    assert moved("api", "grpc_server_handling_seconds_count", **create) == 1
    get = {**servers, "grpc_method": "GetServer"}
    assert moved("api", "grpc_server_handled_total", **get, grpc_code="NotFound") == 1
    assert moved("api", "grpc_server_handled_total", **get, grpc_code="OK") >= 2
    assert moved("conductor", "nova_grpc_instances_placed_total") == 2
    assert moved("conductor", "nova_grpc_scheduling_pass_seconds_count") >= 1
    assert moved("conductor", "nova_grpc_instance_events_total", kind="active") == 2
    # the api's build streams to the conductor (client streams, opened at the api's start)
    streams = {"grpc_type": "client_stream", "grpc_service": "novagrpc.internal.v1.Conductor",
               "grpc_method": "BuildInstances"}  # fmt: skip
    assert metric(after["conductor"], "grpc_server_started_total", **streams) >= 1
    assert moved("compute", "nova_grpc_builds_total", outcome="active") == 2
    assert metric(after["compute"], "nova_grpc_builds_queued") == 0
    build = {"grpc_type": "unary", "grpc_service": "novagrpc.internal.v1.Compute",
             "grpc_method": "BuildAndRunInstance", "grpc_code": "OK"}  # fmt: skip
    assert moved("compute", "grpc_server_handled_total", **build) == 1


def test_metrics_move_and_a_request_id_crosses_all_three_services(
    tmp_path: Path, sqlite_url: str
) -> None:
    url = sqlite_url
    _, token = issue_token(url, "demo")
    services = ServiceSet(tmp_path, env={"NOVA_GRPC_LOG_FORMAT": "json"})
    ports = {"conductor": "127.0.0.1:19780", "compute": "127.0.0.1:19790", "api": "127.0.0.1:19774"}
    try:
        conductor = services.start(
            "conductor", "services.conductor",
            ["--listen", "127.0.0.1:0", "--database-url", url, "--metrics-listen",
             ports["conductor"], "--health-listen", "127.0.0.1:19781"],
        )  # fmt: skip
        services.start(
            "compute", "services.compute",
            ["--listen", "127.0.0.1:0", "--conductor-addresses", conductor.address,
             "--host", "obs-1", "--instances-path", str(tmp_path / "instances"),
             "--metrics-listen", ports["compute"]],
        )  # fmt: skip
        api = services.start(
            "api", "services.api",
            ["--listen", "127.0.0.1:0", "--database-url", url, "--conductor-addresses",
             conductor.address, "--metrics-listen", ports["api"]],
        )  # fmt: skip
        # kubelet's view: plaintext health on the health port, while the main port needs mTLS
        with grpc.insecure_channel("127.0.0.1:19781") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5
            )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        before = {name: scrape(address) for name, address in ports.items()}
        request_id = "req-trace-0123456789"
        with grpc.insecure_channel(api.address) as channel:
            stub = servers_pb2_grpc.ServersStub(channel)
            headers = (("authorization", f"Bearer {token}"), ("x-request-id", request_id))
            reply = stub.CreateServer(
                servers_pb2.CreateServerRequest(
                    name="traced", flavor_ref="m1.tiny", image_ref="nova-tiny", max_count=2
                ),
                timeout=10, metadata=headers,
            )  # fmt: skip
            with pytest.raises(grpc.RpcError) as missing:
                stub.GetServer(servers_pb2.GetServerRequest(id=str(uuid.uuid4())), timeout=5,
                               metadata=headers[:1])  # fmt: skip
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            wait_until(
                lambda: not any(
                    stub.GetServer(servers_pb2.GetServerRequest(id=i), timeout=5,
                                   metadata=headers[:1]).status == servers_pb2.SERVER_STATUS_BUILD
                    for i in reply.server_ids
                ),
                30, "both servers to leave BUILD",
            )  # fmt: skip
        after: dict[str, dict[str, float]] = {}

        def metrics_moved() -> bool:
            # a counter moves a moment after the answer it counts (the interceptor records a
            # call once it has been answered): scrape until all moved, then assert below
            after.update({name: scrape(address) for name, address in ports.items()})
            try:
                check_metrics(before, after)
            except AssertionError:
                return False
            return True

        with contextlib.suppress(TimeoutError):  # check_metrics below says what did not move
            wait_until(metrics_moved, 10, "the create's metrics", interval=0.1)
    finally:
        services.stop()

    check_metrics(before, after)

    traced: dict[str, list[dict[str, str]]] = {}
    for log_file in tmp_path.glob("*.log"):
        for line in log_file.read_text().splitlines():
            if not line.startswith("{"):
                continue
            entry = json.loads(line)  # every line is one JSON object
            if entry.get("request_id") == request_id:
                traced.setdefault(entry["service"], []).append(entry)
    assert set(traced) == {"api", "conductor", "compute[obs-1]"}, traced.keys()
    assert any("accepted 2 servers" in e["message"] for e in traced["api"])
    assert any("placed 2 servers" in e["message"] for e in traced["conductor"])
    builds = [e for e in traced["compute[obs-1]"] if "instance running" in e["message"]]
    assert sorted(e["instance_uuid"] for e in builds) == sorted(reply.server_ids)
    assert all(re.fullmatch(r"[0-9a-f-]{36}", e["instance_uuid"]) for e in builds)
