"""End-to-end create benchmark on test:///<node file> hypervisors (big simulated hosts)."""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from services.cli.launcher import Launcher
from services.cli.manage import issue_token
from services.common.db.migrate import upgrade
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from services.common.tls import create_pki, role_settings_env

# 64 CPUs, 256 GiB: room for hundreds of m1.tiny per simulated host.
NODE_XML = (
    "<node><cpu><mhz>3000</mhz><model>x86_64</model><active>64</active><nodes>1</nodes>"
    "<sockets>2</sockets><cores>16</cores><threads>2</threads></cpu>"
    "<memory>268435456</memory></node>"
)


def _request(name: str, count: int) -> servers_pb2.CreateServerRequest:
    return servers_pb2.CreateServerRequest(
        name=name, flavor_ref="m1.tiny", image_ref="nova-tiny", min_count=count, max_count=count
    )


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def _counts(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as connection:
        return dict(
            connection.execute("SELECT vm_state, count(*) FROM instances GROUP BY vm_state")
        )


def _wait_settled(database: Path, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = _counts(database)
        if not counts.get("building") or time.monotonic() > deadline:
            return counts
        time.sleep(0.01)


def run_e2e(
    workdir: Path, *, computes: int, instances: int, batch: int, latency_samples: int,
    clients: int,
) -> list[dict[str, Any]]:  # fmt: skip
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "run").mkdir(parents=True)
    database = workdir / "nova.sqlite"
    url = f"sqlite:///{database}"
    upgrade(url)
    node = (workdir / "node.xml").resolve()
    node.write_text(NODE_XML)
    launcher = Launcher(workdir)
    pki = create_pki(workdir / "pki")
    log = workdir / "services.log"
    results: list[dict[str, Any]] = []
    try:
        conductor = launcher.start(
            "conductor", "services.conductor",
            ["--listen", "127.0.0.1:0", "--database-url", url, "--log-level", "WARNING",
             # simulated hosts share one real disk: let each claim a large share of it
             "--disk-allocation-ratio", "100"], log=log,
            env=role_settings_env(pki, "conductor"),
        )  # fmt: skip
        for i in range(computes):
            launcher.start(
                f"compute{i}", "services.compute",
                ["--listen", "127.0.0.1:0", "--conductor-addresses", conductor, "--host",
                 f"bench-{i}", "--libvirt-uri", f"test://{node}", "--log-level", "WARNING",
                 "--instances-path", str(workdir / f"instances{i}")], log=log,
            env=role_settings_env(pki, "compute"),
            )  # fmt: skip
        api = launcher.start(
            "api", "services.api",
            ["--listen", "127.0.0.1:0", "--database-url", url, "--conductor-addresses",
             conductor, "--log-level", "WARNING", "--quota-instances", "-1",
             "--quota-cores", "-1", "--quota-ram", "-1",
             "--rate-limit-per-second", "0"], log=log,
            env=role_settings_env(pki, "api"),
        )  # fmt: skip
        time.sleep(1.0)  # let every compute register its node
        channel = grpc.insecure_channel(api)
        _, token = issue_token(url, "bench")
        metadata = (("authorization", f"Bearer {token}"),)
        stub = servers_pb2_grpc.ServersStub(channel)
        stub.CreateServer(_request("warmup", 1), timeout=10, metadata=metadata)

        def one(i: int) -> float:
            started = time.perf_counter()
            stub.CreateServer(_request(f"lat-{i}", 1), timeout=10, metadata=metadata)
            return (time.perf_counter() - started) * 1000

        with ThreadPoolExecutor(clients) as pool:
            latencies = list(pool.map(one, range(latency_samples)))
        conditions = f"{clients} client(s), {latency_samples} creates of 1, {computes} computes"
        results.append({"figure": "CreateServer p50", "value": statistics.median(latencies),
                        "unit": "ms", "conditions": conditions})  # fmt: skip
        results.append({"figure": "CreateServer p99", "value": _percentile(latencies, 99),
                        "unit": "ms", "conditions": conditions})  # fmt: skip
        _wait_settled(database, 120)
        before = _counts(database)
        started = time.perf_counter()
        for i in range(instances // batch):
            stub.CreateServer(_request(f"tp-{i}", batch), timeout=30, metadata=metadata)
        after = _wait_settled(database, 300)
        elapsed = time.perf_counter() - started
        active = after.get("active", 0) - before.get("active", 0)
        errors = after.get("error", 0) - before.get("error", 0)
        results.append({
            "figure": "end-to-end to ACTIVE", "value": (instances // batch) * batch / elapsed,
            "unit": "instances/s",
            "conditions": f"{instances} instances as creates of {batch}, {computes} computes on "
                          f"test:///node.xml; {active} ACTIVE, {errors} ERROR",
        })  # fmt: skip
        channel.close()
    finally:
        launcher.stop()
    return results
