"""Fairness under attack: while one project floods the api with its most expensive calls
(ListServers of 1,000 servers, as many at once as it is allowed), another project's
CreateServer and GetServer latencies, against the same figures unloaded.

The api and conductor run as processes (no compute: the victim's creates end in ERROR at the
scheduler, which keeps the run about the api); the flood runs in its own process so that its
client-side decoding does not share a CPU-bound event loop with the measured client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from services.cli.launcher import Launcher
from services.cli.manage import issue_token
from services.common.db.migrate import upgrade
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from services.common.pki import create_pki, role_settings_env
from tests.support import postgres

QUIET = ["--log-level", "WARNING"]
ATTACKER_SERVERS = 1000
# The mixed flood: beside the ListServers loops, WatchServers streams (the per-project cap)
# and loops of CreateServer of 100 servers.
WATCHES = 16
CREATES = 4


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Latencies:
    create: list[float]
    get: list[float]
    failed: int = 0  # calls that failed (counted at the time they took)

    def p(self, pct: float) -> tuple[float, float]:
        return percentile(self.create, pct), percentile(self.get, pct)


def _auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def victim(address: str, token: str, calls: int, *, tolerate: bool = False) -> Latencies:
    """``calls`` CreateServer then GetServer, one at a time (ms each). A failed call raises,
    or with ``tolerate`` counts at the time it took (and a failed create skips its get)."""
    creates, gets, failed = [], [], 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = servers_pb2_grpc.ServersStub(channel)
        for i in range(calls):
            started = time.perf_counter()
            try:
                reply = await stub.CreateServer(
                    servers_pb2.CreateServerRequest(
                        name=f"v{i}", flavor_ref="m1.tiny", image_ref="nova-tiny"
                    ),
                    timeout=30, metadata=_auth(token),
                )  # fmt: skip
            except grpc.aio.AioRpcError:
                if not tolerate:
                    raise
                failed += 1
                creates.append((time.perf_counter() - started) * 1000)
                continue
            creates.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            try:
                await stub.GetServer(
                    servers_pb2.GetServerRequest(id=reply.server_ids[0]),
                    timeout=30,
                    metadata=_auth(token),
                )
            except grpc.aio.AioRpcError:
                if not tolerate:
                    raise
                failed += 1
            gets.append((time.perf_counter() - started) * 1000)
    return Latencies(creates, gets, failed)


async def flood(
    address: str, token: str, seconds: float, concurrency: int, *, watches: int = 0,
    creates: int = 0,
) -> dict[str, int]:  # fmt: skip
    """The most expensive calls one project can make, until standard input closes (or
    ``seconds`` pass): whole-page ListServers from ``concurrency - creates`` loops,
    ``creates`` loops of CreateServer of 100 servers each, and ``watches`` WatchServers of the
    whole project, each re-opened as soon as its snapshot is in. Counts outcomes by code."""
    outcomes: dict[str, int] = {}
    stopped = asyncio.Event()

    async def watch_stdin() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(sys.stdin.read), seconds)
        stopped.set()

    async def repeat(call: Any, what: str) -> None:
        while not stopped.is_set():
            try:
                await call()
                code = "OK"
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    await asyncio.sleep(0.01)  # as a client told to back off would
            key = f"{what} {code}" if what else code
            outcomes[key] = outcomes.get(key, 0) + 1

    async with grpc.aio.insecure_channel(address) as channel:
        stub = servers_pb2_grpc.ServersStub(channel)
        listing = servers_pb2.ListServersRequest(limit=1000, name="^a")
        big = servers_pb2.CreateServerRequest(
            name="big", flavor_ref="m1.tiny", image_ref="nova-tiny", min_count=100,
            max_count=100,
        )  # fmt: skip

        async def list_page() -> None:
            await stub.ListServers(listing, timeout=30, metadata=_auth(token))

        async def create_many() -> None:
            await stub.CreateServer(big, timeout=30, metadata=_auth(token))

        async def snapshot() -> None:
            stream = stub.WatchServers(
                servers_pb2.WatchServersRequest(), timeout=10, metadata=_auth(token)
            )
            received = 0
            async for _ in stream:
                received += 1
                if received >= ATTACKER_SERVERS:
                    break
            stream.cancel()

        await asyncio.gather(
            watch_stdin(),
            *(repeat(list_page, "") for _ in range(concurrency - creates)),
            *(repeat(create_many, "create") for _ in range(creates)),
            *(repeat(snapshot, "watch") for _ in range(watches)),
        )
    return outcomes


async def seed(address: str, token: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = servers_pb2_grpc.ServersStub(channel)
        for batch in range(ATTACKER_SERVERS // 100):
            await stub.CreateServer(
                servers_pb2.CreateServerRequest(
                    name=f"a{batch}", flavor_ref="m1.tiny", image_ref="nova-tiny",
                    min_count=100, max_count=100,
                ),
                timeout=60, metadata=_auth(token),
            )  # fmt: skip


def start_api(workdir: Path, api_args: list[str], *, url: str = "") -> tuple[Launcher, str, str]:
    """``url``: the database (default: a SQLite file in ``workdir``)."""
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "run").mkdir(parents=True)
    url = url or f"sqlite:///{workdir / 'nova.sqlite'}"
    upgrade(url)
    pki = create_pki(workdir / "pki")
    launcher = Launcher(workdir)
    log = workdir / "services.log"
    try:
        conductor = launcher.start(
            "conductor", "services.conductor",
            ["--listen", "127.0.0.1:0", "--database-url", url, *QUIET],
            log=log, env=role_settings_env(pki, "conductor"),
        )  # fmt: skip
        api = launcher.start(
            "api", "services.api",
            ["--listen", "127.0.0.1:0", "--database-url", url, "--conductor-addresses",
             conductor, "--quota-instances", "-1", "--quota-cores", "-1", "--quota-ram", "-1",
             *QUIET, *api_args],
            log=log, env=role_settings_env(pki, "api"),
        )  # fmt: skip
    except BaseException:
        launcher.stop()
        raise
    return launcher, api, url


def _flooded(api: str, attacker: str, concurrency: int, mix: bool) -> subprocess.Popen[str]:
    extra = ["--watches", str(WATCHES), "--creates", str(CREATES)] if mix else []
    return subprocess.Popen(
        [sys.executable, "-m", "bench.fairness", "flood", api, attacker, "300",
         str(concurrency), *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def _stop_flood(flooder: subprocess.Popen[str], outcomes: dict[str, int]) -> None:
    output, _ = flooder.communicate(timeout=60)  # closing its stdin stops it
    if output.strip():
        for code, n in json.loads(output.strip().splitlines()[-1]).items():
            outcomes[code] = outcomes.get(code, 0) + n


def measure_rounds(
    workdir: Path,
    *,
    calls: int = 200,
    rounds: int = 1,
    concurrency: int = 64,
    mix: bool = False,
    tolerate: bool = False,
    api_args: list[str] | None = None,
    url: str = "",
) -> tuple[list[tuple[Latencies, Latencies]], dict[str, int]]:
    """``rounds`` of (unloaded, under flood) pairs, one after the other, so that each flood
    figure has an unloaded one taken moments before on the same shared machine (its other
    load moves both); and the flood's outcomes over every round."""
    launcher, api, url = start_api(workdir, api_args or [], url=url)
    try:
        _, attacker = issue_token(url, "attacker")
        _, victim_token = issue_token(url, "victim")
        asyncio.run(seed(api, attacker))
        asyncio.run(victim(api, victim_token, 20))  # warm up
        pairs, outcomes = [], {}
        for _ in range(rounds):
            unloaded = asyncio.run(victim(api, victim_token, calls, tolerate=tolerate))
            flooder = _flooded(api, attacker, concurrency, mix)
            try:
                time.sleep(1.0)  # let the flood reach its stride
                loaded = asyncio.run(victim(api, victim_token, calls, tolerate=tolerate))
            finally:
                _stop_flood(flooder, outcomes)
            pairs.append((unloaded, loaded))
        return pairs, outcomes
    finally:
        launcher.stop()


def measure(
    workdir: Path,
    *,
    calls: int = 200,
    concurrency: int = 64,
    mix: bool = False,
    api_args: list[str] | None = None,
) -> tuple[Latencies, Latencies, dict[str, int]]:
    """(unloaded, under flood, flood outcomes), one round."""
    pairs, outcomes = measure_rounds(
        workdir, calls=calls, concurrency=concurrency, mix=mix, api_args=api_args
    )
    return pairs[0][0], pairs[0][1], outcomes


def _span(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def run_fairness(
    workdir: Path,
    *,
    calls: int = 200,
    rounds: int = 3,
    mix: bool = False,
    api_args: list[str] | None = None,
    url: str = "",
) -> list[dict[str, Any]]:
    """``url``: a PostgreSQL database (its rows say so); default: a SQLite file."""
    pairs, outcomes = measure_rounds(
        workdir, calls=calls, rounds=rounds, mix=mix, tolerate=True, api_args=api_args,
        url=url,
    )  # fmt: skip
    failed = sum(b.failed for _, b in pairs), sum(u.failed for u, _ in pairs)
    flood_summary = ", ".join(f"{n} {code}" for code, n in sorted(outcomes.items()))
    attack = (
        f"{64 - CREATES} concurrent ListServers of {ATTACKER_SERVERS} servers, {CREATES} "
        f"loops of CreateServer of 100, {WATCHES} WatchServers re-opened after each snapshot"
        if mix
        else f"64 concurrent ListServers of {ATTACKER_SERVERS} servers"
    )
    conditions = (
        f"{rounds} rounds of victim: {calls} sequential CreateServer+GetServer unloaded, then "
        f"the same under flood; attacker: {attack} ({flood_summary}); api+conductor "
        f"processes, {'PostgreSQL 15 (local)' if url else 'SQLite'}; 2 vCPUs shared with other "
        "work (the range is the lowest and "
        f"highest round); victim calls failed under flood / unloaded: {failed[0]} / {failed[1]}"
    )
    label = (" (mixed flood)" if mix else "") + (" on PostgreSQL" if url else "")
    rows = []
    for name, index in (("CreateServer", 0), ("GetServer", 1)):
        for pct in (50, 99):
            calm = [u.p(pct)[index] for u, _ in pairs]
            busy = [b.p(pct)[index] for _, b in pairs]
            ratio = [b / c for c, b in zip(calm, busy, strict=True)]
            for what, values, unit in (("unloaded", calm, "ms"), ("under flood", busy, "ms"),
                                        ("flood/unloaded", ratio, "x")):  # fmt: skip
                # the value is the worst round: a target is met only if every round met it
                rows.append({"figure": f"{name} p{pct} {what}{label}", "value": max(values),
                             "range": _span(values), "unit": unit,
                             "conditions": conditions})  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.fairness")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("flood")
    run.add_argument("address")
    run.add_argument("token")
    run.add_argument("seconds", type=float)
    run.add_argument("concurrency", type=int)
    run.add_argument("--watches", type=int, default=0)
    run.add_argument("--creates", type=int, default=0)
    measure_cmd = sub.add_parser("measure")
    measure_cmd.add_argument("--workdir", default="var/bench/fairness")
    measure_cmd.add_argument("--calls", type=int, default=200)
    measure_cmd.add_argument("--rounds", type=int, default=3)
    measure_cmd.add_argument("--mix", action="store_true", help="watches and big creates too")
    measure_cmd.add_argument("--api-arg", action="append", default=[])
    measure_cmd.add_argument(
        "--postgres", action="store_true", help="on a new database of the local PostgreSQL"
    )
    args = parser.parse_args()
    if args.command == "flood":
        outcomes = asyncio.run(
            flood(args.address, args.token, args.seconds, args.concurrency,
                  watches=args.watches, creates=args.creates)
        )  # fmt: skip
        print(json.dumps(outcomes))
        return 0
    url = postgres.create_database() if args.postgres else ""
    try:
        rows = run_fairness(
            Path(args.workdir),
            calls=args.calls,
            rounds=args.rounds,
            mix=args.mix,
            api_args=args.api_arg,
            url=url,
        )
    finally:
        if url:
            postgres.drop_database(url)
    for row in rows:
        print(f"{row['figure']:<40} {row['range']:>14} {row['unit']}")
    print(rows[0]["conditions"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
