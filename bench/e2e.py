"""End-to-end benchmarks: the three services as processes, 20 computes on libvirt's test
driver, CreateServer latency with 1 and 50 clients, time to ACTIVE for 1,000 instances, and
the resident memory of each service idle and after the runs."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import func, select

from bench.targets import highest_rate_within_latency
from services.cli.launcher import Launcher
from services.cli.manage import issue_token
from services.common.db.engine import Database
from services.common.db.migrate import upgrade
from services.common.db.models import INSTANCES, NODES
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from services.common.pki import create_pki, role_settings_env
from tests.support.hosts import NODE_XML

QUIET = ["--log-level", "WARNING"]


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Fleet:
    launcher: Launcher
    db: Database  # one engine for every poll of the run, closed by stop()
    api: str
    token: str

    def stop(self) -> None:
        try:
            self.launcher.stop()
        finally:
            self.db.close()

    def rss(self) -> dict[str, float]:
        """Resident MiB per role (compute: the largest of them)."""
        found: dict[str, float] = {}
        for name, process in self.launcher.children:
            role = "compute" if name.startswith("compute") else name
            found[role] = max(found.get(role, 0.0), rss_mb(process.pid))
        return found

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far, summed per role."""
        tick = os.sysconf("SC_CLK_TCK")
        used: dict[str, float] = {}
        for name, process in self.launcher.children:
            role = "compute" if name.startswith("compute") else name
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            used[role] = used.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        return used

    def counts(self) -> dict[str, int]:
        with self.db.begin_read() as c:
            rows = c.execute(
                select(INSTANCES.c.vm_state, func.count()).group_by(INSTANCES.c.vm_state)
            )
            return {state: count for state, count in rows}


def start_fleet(workdir: Path, computes: int, url: str | None = None) -> Fleet:
    """Start a conductor, ``computes`` computes and an api on ``url`` (default: a fresh
    SQLite file in ``workdir``)."""
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "run").mkdir(parents=True)
    url = url or f"sqlite:///{workdir / 'nova.sqlite'}"
    upgrade(url)
    node = (workdir / "node.xml").resolve()
    node.write_text(NODE_XML)
    pki = create_pki(workdir / "pki")
    launcher = Launcher(workdir)
    log = workdir / "services.log"
    conductor = launcher.start(
        "conductor", "services.conductor",
        ["--listen", "127.0.0.1:0", "--database-url", url, *QUIET],
        log=log, env=role_settings_env(pki, "conductor"),
    )  # fmt: skip
    for i in range(computes):
        launcher.start(
            f"compute{i}", "services.compute",
            ["--listen", "127.0.0.1:0", "--conductor-addresses", conductor, "--host",
             f"bench-{i:02d}", "--libvirt-uri", f"test://{node}",
             "--instances-path", str(workdir / f"instances{i}"), *QUIET,
             # simulated hosts share one real disk: let each claim a large share of it
             "--disk-allocation-ratio", "100"],
            log=log, env=role_settings_env(pki, "compute", host=f"bench-{i:02d}"),
        )  # fmt: skip
    api = launcher.start(
        "api", "services.api",
        ["--listen", "127.0.0.1:0", "--database-url", url, "--conductor-addresses", conductor,
         "--quota-instances", "-1", "--quota-cores", "-1", "--quota-ram", "-1",
         "--rate-limit-per-second", "0", *QUIET],
        log=log, env=role_settings_env(pki, "api"),
    )  # fmt: skip
    db = Database(url)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with db.begin_read() as c:
                if c.execute(select(func.count()).select_from(NODES)).scalar() == computes:
                    break
            time.sleep(0.2)
        _, token = issue_token(url, "bench")
    except BaseException:  # no fleet to hand back: stop what was started
        launcher.stop()
        db.close()
        raise
    return Fleet(launcher, db, api, token)


def _request(
    name: str, count: int, networks: tuple[str, ...] = ()
) -> servers_pb2.CreateServerRequest:
    """``networks`` empty: "auto", one port each on the project's default network."""
    return servers_pb2.CreateServerRequest(
        name=name, flavor_ref="m1.tiny", image_ref="nova-tiny", min_count=count,
        max_count=count, networks=list(networks),
    )  # fmt: skip


async def _creates(
    fleet: Fleet, *, total: int, per_create: int, clients: int, rate: float = 0.0,
    networks: tuple[str, ...] = (),
) -> tuple[list[float], float]:  # fmt: skip
    """Create ``total`` instances in creates of ``per_create`` from ``clients`` concurrent
    clients; (latencies in ms, seconds from the first request to the last ACTIVE).

    With no ``rate`` each client sends its next create as soon as the last one is answered
    (closed loop: the clients go as fast as the system lets them). With a ``rate`` the
    creates are sent on a fixed schedule of ``rate`` per second across the clients (open
    loop), so latency is measured at a known load rather than at saturation."""
    metadata = (("authorization", f"Bearer {fleet.token}"),)
    latencies: list[float] = []
    before = fleet.counts().get("active", 0)
    async with grpc.aio.insecure_channel(fleet.api) as channel:
        stub = servers_pb2_grpc.ServersStub(channel)
        await stub.CreateServer(_request("warmup", 1), timeout=10, metadata=metadata)
        before += 1
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(total // per_create):
            queue.put_nowait(i)

        async def client() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                if rate:
                    await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
                sent = time.perf_counter()
                await stub.CreateServer(_request(f"b{i}", per_create, networks), timeout=30,
                                        metadata=metadata)  # fmt: skip
                latencies.append((time.perf_counter() - sent) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        target = before + total
        while fleet.counts().get("active", 0) < target:
            if time.perf_counter() - started > 600:
                raise TimeoutError("instances never became ACTIVE")
            await asyncio.sleep(0.01)
        return latencies, time.perf_counter() - started


class Profiler:
    """py-spy sampling one service while a run goes on; writes collapsed stacks (the format
    of flamegraph.pl and speedscope) and a short summary of where the samples fell."""

    def __init__(self, fleet: Fleet, role: str | None, out: Path) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        if role is None:
            return
        name = "compute0" if role == "compute" else role
        pid = next(p.pid for n, p in fleet.launcher.children if n == name)
        spy = Path(sys.executable).with_name("py-spy")
        out.parent.mkdir(parents=True, exist_ok=True)
        self.out = out
        self._process = subprocess.Popen(
            [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "250",
             "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGINT)
        self._process.wait(timeout=60)
        print(f"profile written to {self.out}")
        print(summarise_profile(self.out))


# Leaf frames of a thread that is waiting, not working: an idle event loop, a worker pool
# thread waiting for work, a thread blocked in C (gRPC's poller, a lock).
IDLE_LEAVES = ("select (selectors", "wait (threading", "Thread.run (threading",
               "_worker (concurrent/futures/thread.py:81)")  # fmt: skip


def _package(frame: str) -> str:
    path = frame[frame.find("(") + 1 : frame.rfind(":")]
    if frame.startswith("Handle._run (asyncio"):
        return "gRPC core (Cython callbacks on the event loop)"
    return path.split("/")[0].removesuffix(".py")


def summarise_profile(path: Path, top: int = 15) -> str:
    """Where the busy samples fell: by package of the innermost frame, and the share spent
    in (or under) each of the project's functions."""
    packages: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    busy = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if any(idle in frames[-1] for idle in IDLE_LEAVES):
            continue
        busy += int(count)
        packages[_package(frames[-1])] = packages.get(_package(frames[-1]), 0) + int(count)
        for frame in set(frames):
            if "services/" in frame and "__main__" not in frame and "service.py" not in frame:
                inclusive[frame] = inclusive.get(frame, 0) + int(count)
    share = 100 / max(busy, 1)
    lines = [f"{busy} busy samples; by package of the innermost frame:"]
    ranked = sorted(packages.items(), key=lambda item: -item[1])[:8]
    lines += [f"  {share * n:5.1f}%  {name}" for name, n in ranked]
    lines.append("share in or under each of the project's functions:")
    ranked = sorted(inclusive.items(), key=lambda item: -item[1])[:top]
    lines += [f"  {share * n:5.1f}%  {frame}" for frame, n in ranked]
    return "\n".join(lines)


def _latency_rows(latencies: list[float], label: str, conditions: str) -> list[dict[str, Any]]:
    return [
        {"figure": f"CreateServer p50, {label}", "value": statistics.median(latencies),
         "unit": "ms", "conditions": conditions},
        {"figure": f"CreateServer p99, {label}", "value": _percentile(latencies, 99),
         "unit": "ms", "conditions": conditions},
    ]  # fmt: skip


def _throughput_row(label: str, instances: int, seconds: float, conditions: str) -> dict[str, Any]:
    return {
        "figure": f"end-to-end to ACTIVE, {label}", "value": instances / seconds,
        "unit": "instances/s", "conditions": conditions,
    }  # fmt: skip


def _cpu_rows(before: dict[str, float], after: dict[str, float], instances: int,
              conditions: str) -> list[dict[str, Any]]:  # fmt: skip
    return [
        {"figure": f"CPU per instance, {role}",
         "value": (after[role] - before[role]) * 1000 / instances, "unit": "CPU-ms",
         "conditions": conditions + ("" if role != "compute" else " (all computes together)")}
        for role in ("api", "conductor", "compute")
    ]  # fmt: skip


def _rss_rows(idle: dict[str, float], busy: dict[str, float], stored: int) -> list[dict[str, Any]]:
    rows = []
    for role in ("api", "conductor", "compute"):
        largest = " (largest of the computes)" if role == "compute" else ""
        rows.append({"figure": f"RSS {role}, idle", "value": idle[role], "unit": "MiB",
                     "conditions": "after start-up" + largest})  # fmt: skip
        rows.append({"figure": f"RSS {role}, after the runs", "value": busy[role], "unit": "MiB",
                     "conditions": f"{stored} instances in the database{largest}"})  # fmt: skip
    return rows


def _networks_cost(
    fleet: Fleet, instances: int, with_port: float, conditions: str
) -> list[dict[str, Any]]:
    """The same run with no NIC (networks ["none"]): what a port per server (IPAM in the
    create transaction, the port on the build) costs in throughput."""
    _, without = asyncio.run(
        _creates(fleet, total=instances, per_create=1, clients=50, networks=("none",))
    )
    return [
        _throughput_row("single creates, no NIC", instances, without, conditions),
        {
            "figure": "throughput with one port per server / without a NIC",
            "value": without / with_port,
            "unit": "ratio",
            "conditions": f"{conditions}; the port run first, the no-NIC run right after",
        },
    ]


def run_e2e(
    workdir: Path,
    *,
    computes: int = 20,
    instances: int = 1000,
    paced_rates: tuple[float, ...] = (50.0, 100.0, 150.0, 200.0, 300.0),
    profile: str | None = None,
) -> list[dict[str, Any]]:
    """The e2e figures; with ``profile`` (api, conductor or compute), that service is
    sampled with py-spy during the 50-client run."""
    fleet = start_fleet(workdir, computes)
    results: list[dict[str, Any]] = []
    try:
        time.sleep(2.0)
        idle = fleet.rss()
        where = f"{computes} computes on libvirt's test driver, SQLite, mutual TLS inside"
        one, _ = asyncio.run(_creates(fleet, total=300, per_create=1, clients=1))
        results += _latency_rows(one, "1 client", f"300 creates of 1 in a row, {where}")
        _, batched = asyncio.run(_creates(fleet, total=instances, per_create=100, clients=1))
        results.append(_throughput_row(
            "creates of 100", instances, batched,
            f"{instances} instances as {instances // 100} creates of 100, {where}",
        ))  # fmt: skip
        before = fleet.cpu_seconds()
        profiler = Profiler(fleet, profile, Path("bench/results") / f"profile-{profile}.txt")
        fifty, single = asyncio.run(_creates(fleet, total=instances, per_create=1, clients=50))
        profiler.stop()
        after = fleet.cpu_seconds()
        singles = f"{instances} creates of 1 from 50 concurrent clients"
        results += _latency_rows(
            fifty, "50 clients", f"{singles}, each sending as soon as answered, {where}"
        )
        results.append(_throughput_row("single creates", instances, single, f"{singles}, {where}"))
        results += _cpu_rows(before, after, instances, f"{singles}, from request to ACTIVE")
        results += _networks_cost(fleet, instances, single, f"{singles}, {where}")
        sweep: dict[float, tuple[float, float]] = {}
        for rate in paced_rates:
            count = min(instances, int(rate * 10))
            paced, _ = asyncio.run(
                _creates(fleet, total=count, per_create=1, clients=50, rate=rate)
            )
            sweep[rate] = (statistics.median(paced), _percentile(paced, 99))
            results += _latency_rows(
                paced, f"50 clients at {rate:.0f}/s",
                f"{count} creates of 1 sent on a schedule of {rate:.0f}/s by 50 clients, {where}",
            )  # fmt: skip
        results.append({
            "figure": "highest load with CreateServer p50 <= 3 ms and p99 <= 15 ms",
            "value": highest_rate_within_latency(sweep), "unit": "creates/s",
            "conditions": f"the highest of {', '.join(f'{r:.0f}' for r in paced_rates)} "
            f"creates/s (50 clients, open loop) up to which the target held, {where}",
        })  # fmt: skip
        time.sleep(1.0)
        results += _rss_rows(idle, fleet.rss(), sum(fleet.counts().values()))
    finally:
        fleet.stop()
    return results
