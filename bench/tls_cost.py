"""The cost of TLS on the public API: CreateServer p50/p99 and the api's CPU per call, with
the api serving TLS itself against plaintext (same machine, same sequential client)."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

import grpc

from bench.fairness import percentile, start_api
from services.cli.manage import issue_token
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from tests.support.public_tls import PublicCa


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _creates(channel: grpc.aio.Channel, token: str, calls: int) -> list[float]:
    stub = servers_pb2_grpc.ServersStub(channel)
    metadata = (("authorization", f"Bearer {token}"),)
    latencies = []
    for i in range(calls):
        started = time.perf_counter()
        await stub.CreateServer(
            servers_pb2.CreateServerRequest(name=f"t{i}", flavor_ref="m1.tiny",
                                            image_ref="nova-tiny"),
            timeout=30, metadata=metadata,
        )  # fmt: skip
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def _measure(workdir: Path, calls: int, ca: PublicCa | None) -> tuple[list[float], float]:
    api_args: list[str] = []
    if ca is not None:
        cert, key = ca.server_pair()
        # beside the work directory, which start_api empties
        cert_file = workdir.parent / f"{workdir.name}-api.pem"
        key_file = workdir.parent / f"{workdir.name}-api-key.pem"
        cert_file.parent.mkdir(parents=True, exist_ok=True)
        cert_file.write_bytes(cert)
        key_file.write_bytes(key)
        api_args = ["--public-tls-cert", str(cert_file), "--public-tls-key", str(key_file)]
    launcher, api, url = start_api(workdir, [*api_args, "--rate-limit-per-second", "0"])
    try:
        _, token = issue_token(url, "bench")
        pid = next(p.pid for name, p in launcher.children if name == "api")

        async def run() -> tuple[list[float], float]:
            if ca is None:
                channel = grpc.aio.insecure_channel(api)
            else:
                roots = grpc.ssl_channel_credentials(root_certificates=ca.path.read_bytes())
                channel = grpc.aio.secure_channel(api, roots)
            async with channel:
                await _creates(channel, token, 20)  # warm up (and the handshake)
                before = _cpu_seconds(pid)
                latencies = await _creates(channel, token, calls)
                return latencies, (_cpu_seconds(pid) - before) / calls * 1000

        return asyncio.run(run())
    finally:
        launcher.stop()


def run_tls_cost(workdir: Path, *, calls: int = 300) -> list[dict[str, Any]]:
    ca = PublicCa.create(workdir / "ca", "bench-public-ca")
    rows = []
    conditions = f"{calls} sequential CreateServer on one connection; api+conductor, SQLite"
    for label, authority in (("plaintext", None), ("TLS", ca)):
        latencies, cpu_ms = _measure(workdir / label, calls, authority)
        rows += [
            {"figure": f"CreateServer p50, public {label}", "value": statistics.median(latencies),
             "unit": "ms", "conditions": conditions},
            {"figure": f"CreateServer p99, public {label}", "value": percentile(latencies, 99),
             "unit": "ms", "conditions": conditions},
            {"figure": f"api CPU per CreateServer, public {label}", "value": cpu_ms,
             "unit": "ms", "conditions": conditions},
        ]  # fmt: skip
    return rows
