"""Scale-out of the conductors, measured (issue 16): placements/s with 1, 2 and 4 conductor
processes on PostgreSQL into tight capacity, the claims they lost to each other, and the CPU
each instance costs in the conductors, in PostgreSQL's backends, in the api and in the
computes — the inputs of bench/scale_out_model.py, which predicts N conductors on M cores.

Each round is a fresh database of its own on the shared cluster (dropped afterwards; the
cluster is never stopped), N conductors, four computes on libvirt's test driver with room
for exactly 100 m1.tiny each (RAM ratio 1.0), and one api; 10 % more instances than fit are
created, so the hosts fill up, the last claims race for the last slots, and the overflow ends
in no-valid-host. PostgreSQL's CPU is read from /proc for every backend of the round's
database, told apart by the application_name each service connects with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import create_engine, func, select, text

from bench.scale_out_model import Costs, predict
from services.cli.launcher import Launcher
from services.cli.manage import issue_token
from services.common.db.migrate import upgrade
from services.common.db.models import INSTANCES, NODES
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from services.common.pki import create_pki, role_settings_env
from tests.support import postgres

QUIET = ["--log-level", "WARNING"]
CONDUCTORS = (1, 2, 4)
COMPUTES = 4
PER_HOST = 100  # m1.tiny (512 MiB) per simulated host
OVERFLOW = 0.10  # created beyond what fits
PER_CREATE = 10  # instances per CreateServer (max_count; min_count 1: what fits is built)
CLIENTS = 4
NODE_MEMORY_KIB = PER_HOST * 512 * 1024
NODE_XML = (
    "<node><cpu><mhz>3000</mhz><model>x86_64</model><active>64</active><nodes>1</nodes>"
    "<sockets>2</sockets><cores>16</cores><threads>2</threads></cpu>"
    f"<memory>{NODE_MEMORY_KIB}</memory></node>"
)
TICK = os.sysconf("SC_CLK_TCK")
IDLE_S = 3.0
ROLES = ("conductor", "api", "compute")


def process_cpu_s(pid: int) -> float | None:
    """user + system CPU seconds of a process (its threads included); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (every core, everyone's processes)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / TICK


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def with_application_name(url: str, name: str) -> str:
    """The URL with libpq's application_name: how PostgreSQL's backends are told apart."""
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


class BackendCpu:
    """Samples the CPU of every PostgreSQL backend of one database, by application_name.

    Backends come and go with the connection pools: one seen at the first sample counts from
    there, one that appears later from zero (a new backend starts with no CPU). A backend that
    ends between two samples loses at most one interval's CPU."""

    def __init__(self, url: str, interval: float = 0.1) -> None:
        self._engine = create_engine(with_application_name(url, "bench-monitor"), pool_size=1)
        self._interval = interval
        self._baseline: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._first = True
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="backend-cpu", daemon=True)

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def sample(self) -> None:
        query = text(
            "SELECT pid, application_name FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        with self._lock:
            for pid, name in rows:
                cpu = process_cpu_s(pid)
                if cpu is None:
                    continue
                if pid not in self._baseline:
                    self._baseline[pid] = cpu if self._first else 0.0
                self._last[pid] = (name, cpu)
            self._first = False

    def totals(self) -> dict[str, float]:
        """CPU seconds since start() per application_name."""
        self.sample()
        with self._lock:
            used: dict[str, float] = {}
            for pid, (name, cpu) in self._last.items():
                used[name] = used.get(name, 0.0) + cpu - self._baseline[pid]
            return used

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._engine.dispose()


@dataclass
class Snapshot:
    at: float
    processes: dict[str, float]  # role -> CPU seconds of its processes
    postgres: dict[str, float]  # application_name -> CPU seconds of its backends
    machine: float


@dataclass
class Round:
    conductors: int
    launcher: Launcher
    url: str
    api: str
    metrics: list[str]  # each conductor's metrics address
    token: str = ""
    created: int = 0
    snapshots: list[Snapshot] = field(default_factory=list)

    def cpu(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for name, process in self.launcher.children:
            role = next(r for r in ROLES if name.startswith(r))
            used[role] = used.get(role, 0.0) + (process_cpu_s(process.pid) or 0.0)
        return used

    def conductor_counters(self) -> dict[str, float]:
        """The conductors' counters, summed over every conductor."""
        names = ("nova_grpc_instances_placed_total", "nova_grpc_no_valid_host_total",
                 "nova_grpc_claim_conflicts_total")  # fmt: skip
        found = dict.fromkeys(names, 0.0)
        for address in self.metrics:
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as reply:
                for line in reply.read().decode().splitlines():
                    name, _, value = line.partition(" ")
                    if name in found:
                        found[name] += float(value)
        return found


def start_round(
    workdir: Path, conductors: int, url: str, conductor_args: tuple[str, ...] = ()
) -> Round:
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "run").mkdir(parents=True)
    upgrade(url)
    node = (workdir / "node.xml").resolve()
    node.write_text(NODE_XML)
    pki = create_pki(workdir / "pki")
    launcher = Launcher(workdir)
    log = workdir / "services.log"
    try:
        addresses, metrics = [], []
        for i in range(conductors):
            metrics.append(f"127.0.0.1:{free_port()}")
            addresses.append(launcher.start(
                f"conductor{i}", "services.conductor",
                ["--listen", "127.0.0.1:0", "--metrics-listen", metrics[-1],
                 "--database-url", with_application_name(url, "bench-conductor"),
                 *conductor_args, *QUIET],
                log=log, env=role_settings_env(pki, "conductor"),
            ))  # fmt: skip
        for i in range(COMPUTES):
            host = f"scale-{i:02d}"
            launcher.start(
                f"compute{i}", "services.compute",
                ["--listen", "127.0.0.1:0", "--conductor-addresses", ",".join(addresses),
                 "--host", host, "--libvirt-uri", f"test://{node}",
                 "--ram-allocation-ratio", "1.0", "--disk-allocation-ratio", "100",
                 "--instance-name-template", "%(uuid)s",
                 "--instances-path", str(workdir / f"instances{i}"), *QUIET],
                log=log, env=role_settings_env(pki, "compute", host=host),
            )  # fmt: skip
        api = launcher.start(
            "api", "services.api",
            ["--listen", "127.0.0.1:0", "--database-url", with_application_name(url, "bench-api"),
             "--conductor-addresses", ",".join(addresses),
             "--quota-instances", "-1", "--quota-cores", "-1", "--quota-ram", "-1",
             "--rate-limit-per-second", "0", *QUIET],
            log=log, env=role_settings_env(pki, "api"),
        )  # fmt: skip
    except BaseException:
        launcher.stop()
        raise
    return Round(conductors, launcher, url, api, metrics)


class Census:
    """Counts instances by outcome (one connection for the whole round)."""

    def __init__(self, url: str) -> None:
        self._engine = create_engine(with_application_name(url, "bench-monitor"), pool_size=1)

    def nodes(self) -> int:
        with self._engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(NODES)).scalar_one())

    def decided(self) -> tuple[int, int, int]:
        """(instances placed on a host, instances in ERROR, instances still building)."""
        query = select(
            func.count().filter(INSTANCES.c.host.is_not(None), INSTANCES.c.vm_state != "error"),
            func.count().filter(INSTANCES.c.vm_state == "error"),
            func.count().filter(INSTANCES.c.vm_state == "building"),
        )
        with self._engine.connect() as c:
            placed, error, building = c.execute(query).one()
        return int(placed), int(error), int(building)

    def close(self) -> None:
        self._engine.dispose()


async def create_all(api: str, token: str, total: int) -> None:
    metadata = (("authorization", f"Bearer {token}"),)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total // PER_CREATE):
        queue.put_nowait(i)
    async with grpc.aio.insecure_channel(api) as channel:
        stub = servers_pb2_grpc.ServersStub(channel)

        async def client() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                await stub.CreateServer(
                    servers_pb2.CreateServerRequest(
                        name=f"s{i}", flavor_ref="m1.tiny", image_ref="nova-tiny",
                        min_count=1, max_count=PER_CREATE,
                    ),
                    timeout=60, metadata=metadata,
                )  # fmt: skip

        await asyncio.gather(*(client() for _ in range(CLIENTS)))


def _wait(census: Census, done: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done(*census.decided()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: {census.decided()} after {timeout:.0f} s")
        time.sleep(0.02)


def measure_round(
    workdir: Path, conductors: int, conductor_args: tuple[str, ...] = ()
) -> dict[str, Any]:
    url = postgres.create_database()
    try:
        fleet = start_round(workdir, conductors, url, conductor_args)
        census, backends = Census(url), BackendCpu(url)
        try:
            deadline = time.monotonic() + 60
            while census.nodes() < COMPUTES:
                if time.monotonic() > deadline:
                    raise TimeoutError("the computes did not register")
                time.sleep(0.1)
            _, fleet.token = issue_token(url, "bench")
            total = round(COMPUTES * PER_HOST * (1 + OVERFLOW))
            backends.start()

            def snapshot() -> Snapshot:
                return Snapshot(time.perf_counter(), fleet.cpu(), backends.totals(),
                                machine_busy_s())  # fmt: skip

            # what the fleet burns doing nothing (heartbeats, the census, periodic syncs):
            # taken out of the per-instance figures, which would otherwise depend on how
            # long a run took on a machine shared with others
            fleet.snapshots.append(snapshot())
            time.sleep(IDLE_S)
            fleet.snapshots.append(snapshot())
            creates = threading.Thread(
                target=lambda: asyncio.run(create_all(fleet.api, fleet.token, total)),
                daemon=True,
            )
            creates.start()
            _wait(census, lambda p, e, b: p + e >= total, "placing", 120)
            fleet.snapshots.append(snapshot())
            creates.join(timeout=60)
            _wait(census, lambda p, e, b: b == 0, "building", 120)
            fleet.snapshots.append(snapshot())
            counters = fleet.conductor_counters()
            placed, error, _ = census.decided()
        finally:
            backends.stop()
            census.close()
            fleet.launcher.stop()
    finally:
        postgres.drop_database(url)
    return _summary(fleet, total, placed, error, counters)


def _summary(
    fleet: Round, total: int, placed: int, error: int, counters: dict[str, float]
) -> dict[str, Any]:
    idle, start, placing_done, settled = fleet.snapshots
    idle_s = start.at - idle.at

    def used(role: str, until: Snapshot) -> float:
        """CPU seconds of ``role`` from the first create to ``until``, less its idle rate."""
        spent = until.processes.get(role, 0.0) - start.processes.get(role, 0.0)
        resting = start.processes.get(role, 0.0) - idle.processes.get(role, 0.0)
        return max(0.0, spent - resting / idle_s * (until.at - start.at))

    def pg(name: str, until: Snapshot) -> float:
        spent = until.postgres.get(name, 0.0) - start.postgres.get(name, 0.0)
        resting = start.postgres.get(name, 0.0) - idle.postgres.get(name, 0.0)
        return max(0.0, spent - resting / idle_s * (until.at - start.at))

    def raw(until: Snapshot) -> float:
        """CPU seconds of everything of ours, idle rate included."""
        processes = sum(until.processes.values()) - sum(start.processes.values())
        return processes + sum(until.postgres.values()) - sum(start.postgres.values())

    ours = raw(settled)
    wall = settled.at - start.at
    return {
        "conductors": fleet.conductors,
        "instances": total,
        "placed": placed,
        "no_valid_host": error,
        "capacity": COMPUTES * PER_HOST,
        "claim_conflicts": int(counters["nova_grpc_claim_conflicts_total"]),
        "placing_s": placing_done.at - start.at,
        "settled_s": wall,
        # CPU-ms per instance over the whole run (placing, dispatch, the builds' reports)
        "ms": {
            "conductor": used("conductor", settled) * 1000 / total,
            "postgres_conductor": pg("bench-conductor", settled) * 1000 / total,
            "postgres_api": pg("bench-api", settled) * 1000 / total,
            "api": used("api", settled) * 1000 / total,
            "compute": used("compute", settled) * 1000 / total,
        },
        "conductor_cores_placing": (used("conductor", placing_done) / (placing_done.at - start.at)),
        # cores busy meanwhile with work outside the fleet: other users', and this benchmark's
        # own client and polling (which compete with the fleet as much)
        "others_cores": max(0.0, (settled.machine - start.machine) - ours) / wall,
    }


def _rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    cores = os.cpu_count() or 1
    base = (
        f"PostgreSQL 15 (local, shared cluster), {COMPUTES} computes on libvirt's test driver "
        f"with room for {PER_HOST} m1.tiny each, {{instances}} instances created (up to "
        f"{PER_CREATE} per CreateServer, {CLIENTS} clients, a port each on the default network), "
        f"{cores} cores shared with the api, the computes, PostgreSQL and other users "
        "({others:.1f} cores busy with other work: other users', the benchmark's client)"
    )
    for run in runs:
        n = run["conductors"]
        label = f"{n} conductor{'s' if n > 1 else ''}"
        conditions = base.format(instances=run["instances"], others=run["others_cores"])
        ms = run["ms"]
        decided = run["placed"] + run["no_valid_host"]

        def row(
            figure: str, value: float, unit: str, *, extra: str = "",
            label: str = label, conditions: str = conditions,
        ) -> dict[str, Any]:  # fmt: skip
            return {"figure": f"scale-out, {label}: {figure}", "value": value, "unit": unit,
                    "conditions": conditions + extra}  # fmt: skip

        rows += [
            row("placements/s", decided / run["placing_s"], "instances placed or refused/s",
                extra=f"; {run['placed']} placed of {run['capacity']} slots, "
                f"{run['no_valid_host']} no valid host"),
            row("instances/s to ACTIVE or ERROR", run["instances"] / run["settled_s"],
                "instances/s"),
            row("claim conflicts", run["claim_conflicts"], "claims lost to another conductor"),
            row("conductor CPU per instance", ms["conductor"], "CPU-ms (all conductors)"),
            row("PostgreSQL CPU per instance, conductors' backends", ms["postgres_conductor"],
                "CPU-ms"),
            row("PostgreSQL CPU per instance, api's backends", ms["postgres_api"], "CPU-ms"),
            row("api CPU per instance", ms["api"], "CPU-ms"),
            row("compute CPU per instance", ms["compute"], "CPU-ms (all computes)"),
            row("conductor cores busy while placing", run["conductor_cores_placing"], "cores"),
        ]  # fmt: skip
    rows += _predictions(runs, cores)
    return rows


def costs_of(run: dict[str, Any]) -> Costs:
    ms = run["ms"]
    return Costs(
        conductor=ms["conductor"],
        postgres=ms["postgres_conductor"] + ms["postgres_api"],
        api=ms["api"],
        compute=ms["compute"],
    )


def _predictions(runs: list[dict[str, Any]], cores: int) -> list[dict[str, Any]]:
    """The model (bench/scale_out_model.py) on the measured costs: this machine as it ran
    (everything on its cores), and a conductor tier with PostgreSQL and the api on 4 and 16
    cores (the computes on their hypervisors), on the costs of the most conductors measured."""
    rows = []
    for run in runs:
        n = run["conductors"]
        left = max(0.1, cores - run["others_cores"])
        settings = (
            (f"this machine's {cores} cores, idle", cores),
            (f"the {left:.1f} of {cores} cores other work left it", left),
        )
        for label, m in settings:
            guess = predict(costs_of(run), conductors=n, cores=m, compute=True)
            rows.append({
                "figure": f"scale-out model, {n} conductor(s) on {label}",
                "value": guess.per_second,
                "unit": f"instances/s (bound: {guess.bound.value})",
                "conditions": "api, computes and PostgreSQL on the same cores, costs of this "
                "round; compare with its measured instances/s to ACTIVE or ERROR",
            })  # fmt: skip
    # the fewest conductors measured lost the fewest claims (an upper bound), the most the
    # most (closer to a real tier of several conductors)
    narrowest = min(runs, key=lambda r: r["conductors"])
    widest = max(runs, key=lambda r: r["conductors"])
    for m in (4, 16):
        for n in sorted({min(m, 4), m}):
            for source in sorted({id(narrowest): narrowest, id(widest): widest}.values(),
                                 key=lambda r: r["conductors"]):  # fmt: skip
                guess = predict(costs_of(source), conductors=n, cores=m)
                rows.append({
                    "figure": f"scale-out model, {n} conductors, {m} cores, costs of "
                    f"{source['conductors']}",
                    "value": guess.per_second,
                    "unit": f"instances/s (bound: {guess.bound.value})",
                    "conditions": f"conductors, api and PostgreSQL on {m} cores, computes "
                    f"elsewhere; CPU per instance as measured with {source['conductors']} "
                    f"conductor(s) ({source['claim_conflicts']} claim conflicts)",
                })  # fmt: skip
    return rows


def run_scale_out(
    workdir: Path,
    *,
    conductors: tuple[int, ...] = CONDUCTORS,
    conductor_args: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    try:
        postgres.ensure_cluster()
    except postgres.PostgresUnavailable as exc:
        print(f"scale-out: skipped ({exc})")
        return []
    runs = []
    for n in conductors:
        runs.append(measure_round(workdir / f"conductors-{n}", n, conductor_args))
        print(f"scale-out: {n} conductor(s) measured")
    return _rows(runs)


def main() -> int:
    """Variants by hand, e.g. ``python -m bench.scale_out --conductors 4 -- --host-subset-size
    4`` (arguments after ``--`` go to every conductor); prints the rows as JSON."""
    parser = argparse.ArgumentParser(prog="bench.scale_out")
    parser.add_argument("--conductors", type=int, action="append")
    parser.add_argument("--workdir", default="var/bench/scale-out")
    parser.add_argument("conductor_args", nargs="*")
    args = parser.parse_args()
    rows = run_scale_out(
        Path(args.workdir),
        conductors=tuple(args.conductors or CONDUCTORS),
        conductor_args=tuple(args.conductor_args),
    )
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
