"""Errors a client can act on (AIP-193), through the real api on port 0: every error carries an
ErrorInfo with a stable reason, a rate limit is told apart from a quota (RetryInfo with the
delay vs QuotaFailure), and novactl waits that delay and tries again."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2

from services.cli.client import Client, Connection
from services.cli.manage import issue_token
from services.cli.status import describe
from services.common.generated.novagrpc.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
)
from tests.integration.test_pipeline import create
from tests.support.auth import Authed
from tests.support.stack import running_stack
from tests.support.status import detail, error_info

pytestmark = pytest.mark.timeout(90)


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_every_kind_of_error_carries_an_error_info(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path, api={"quota_instances": 1}) as stack:
        anonymous = servers_pb2_grpc.ServersStub(stack.channel)
        cases: list[tuple[grpc.aio.AioRpcError, grpc.StatusCode, str, dict[str, str]]] = []

        async def expect(
            call: object, code: grpc.StatusCode, reason: str, **metadata: str
        ) -> grpc.aio.AioRpcError:
            error = await refused(call)
            cases.append((error, code, reason, metadata))
            return error

        await expect(
            anonymous.ListServers(servers_pb2.ListServersRequest(), timeout=5),
            grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING", field="authorization",
        )  # fmt: skip
        await expect(
            stack.servers_as("ngt_not-a-token").ListServers(
                servers_pb2.ListServersRequest(), timeout=5
            ),
            grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID",
        )  # fmt: skip
        bad = await expect(
            stack.servers.CreateServer(create("x" * 300), timeout=5),
            grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", field="name",
        )  # fmt: skip
        violations = detail(bad, error_details_pb2.BadRequest)
        assert violations is not None and violations.field_violations[0].field == "name"
        await expect(
            stack.servers.CreateServer(create(flavor_ref="no-such"), timeout=5),
            grpc.StatusCode.NOT_FOUND, "RESOURCE_NOT_FOUND",
            field="flavor_ref", resource_type="flavor", resource_name="no-such",
        )  # fmt: skip
        flavors = Authed(catalog_pb2_grpc.FlavorsStub(stack.channel), stack.token)
        await expect(
            flavors.CreateFlavor(
                catalog_pb2.CreateFlavorRequest(name="f", vcpus=1, ram=64), timeout=5
            ),
            grpc.StatusCode.PERMISSION_DENIED, "ADMIN_ONLY",
        )  # fmt: skip
        over = await expect(stack.servers.CreateServer(create("q", min_count=2), timeout=5),
                            grpc.StatusCode.RESOURCE_EXHAUSTED, "QUOTA_EXCEEDED",
                            resource="instances", limit="1", requested="2")  # fmt: skip
        quota = detail(over, error_details_pb2.QuotaFailure)
        assert quota is not None and quota.violations[0].subject == "instances"
        assert detail(over, error_details_pb2.RetryInfo) is None  # a retry would not help
        # a method no service has, and a request that is not protobuf at all
        unknown = stack.channel.unary_unary("/novagrpc.v1.Servers/NoSuchMethod")
        await expect(unknown(b"", timeout=5), grpc.StatusCode.UNIMPLEMENTED, "METHOD_NOT_FOUND",
                     method="/novagrpc.v1.Servers/NoSuchMethod")  # fmt: skip
        raw = stack.channel.unary_unary("/novagrpc.v1.Servers/GetServer")
        bearer = (("authorization", f"Bearer {stack.token}"),)
        await expect(
            raw(b"\x0a\xff\xff\xff\xff", timeout=5, metadata=bearer),
            grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST", field="request",
        )  # fmt: skip
        for error, code, reason, metadata in cases:
            assert error.code() == code, error
            info = error_info(error)
            assert info.reason == reason, (error.details(), info)
            assert metadata.items() <= dict(info.metadata).items(), (error.details(), info)


async def test_a_rate_limited_call_carries_the_delay_to_wait(
    sqlite_url: str, tmp_path: Path
) -> None:
    # 0.5 calls per second, bursts of one: the second call at once is refused
    async with running_stack(sqlite_url, tmp_path, api={"rate_limit_per_second": 0.5}) as stack:
        await stack.servers.ListServers(servers_pb2.ListServersRequest(), timeout=5)
        limited = await refused(
            stack.servers.ListServers(servers_pb2.ListServersRequest(), timeout=5)
        )
        assert limited.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(limited).reason == "RATE_LIMITED"
        retry = detail(limited, error_details_pb2.RetryInfo)
        assert retry is not None
        delay = retry.retry_delay.ToTimedelta()
        assert timedelta(0) < delay <= timedelta(seconds=2)  # one token at 0.5/s
        assert detail(limited, error_details_pb2.QuotaFailure) is None
        assert int(error_info(limited).metadata["retry_after_ms"]) == pytest.approx(
            delay.total_seconds() * 1000, abs=1
        )
        # another project has its own bucket
        _, other = issue_token(sqlite_url, "other")
        await stack.servers_as(other).ListServers(servers_pb2.ListServersRequest(), timeout=5)


async def test_novactl_retries_a_rate_limited_call_after_the_servers_delay(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_stack(sqlite_url, tmp_path, api={"rate_limit_per_second": 0.5}) as stack:
        connection = Connection(endpoint=stack.api.address, token=stack.token, tls=False)
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            time.sleep(seconds)

        patient = Client(connection, timeout=5.0, retries=3, sleep=sleep)
        impatient = Client(connection, timeout=5.0, retries=0, sleep=sleep)

        def calls() -> tuple[int, str]:
            started = time.monotonic()
            for _ in range(3):  # one per burst: the second and third must wait
                patient.call(patient.servers.ListServers, servers_pb2.ListServersRequest())
            took = time.monotonic() - started
            try:
                impatient.call(impatient.servers.ListServers, servers_pb2.ListServersRequest())
            except grpc.RpcError as exc:
                return round(took), describe(exc)
            return round(took), ""

        took, refusal = await asyncio.to_thread(calls)
        assert len(slept) >= 2 and all(0 < s <= 2 for s in slept)
        assert took >= sum(slept) - 0.1  # it waited what the server asked before each retry
        assert refusal.startswith("RESOURCE_EXHAUSTED [RATE_LIMITED]: rate limit")
        patient.channel.close()
        impatient.channel.close()
