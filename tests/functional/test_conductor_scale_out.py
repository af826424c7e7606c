"""Conductors scale out and in under steady creates (issue 16), as real processes on the local
PostgreSQL. The api and compute find the conductors through one ``dns:///`` name (answered
by a DNS server on loopback, as a headless Service's name would be) and are never restarted:
a conductor added later is found and gets builds; the first one stopped drains, and every
server ends ACTIVE without the reconciler's help (its grace is set beyond the test)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select

from services.cli.manage import issue_token
from services.common.db.engine import Database
from services.common.db.models import INSTANCES
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from tests.support.auth import Authed
from tests.support.dns import LoopbackDns
from tests.support.polling import wait_until
from tests.support.processes import Service, ServiceSet

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(240)]

NAME = "conductors.nova-grpc.test"
ADDRESSES = ("127.0.0.21", "127.0.0.22")
NODE_XML = (
    "<node><cpu><mhz>3000</mhz><model>x86_64</model><active>64</active><nodes>1</nodes>"
    "<sockets>1</sockets><cores>32</cores><threads>2</threads></cpu>"
    "<memory>1073741824</memory></node>"
)
CONDUCTOR_ARGS = (
    # streams move every ~second, connections are asked to reconnect every second (and so
    # to resolve the name again); the reconciler would only step in after ten minutes
    *("--build-stream-max-age", "1", "--max-connection-age", "1"),
    *("--max-connection-age-grace", "5", "--scheduling-grace", "600"),
)


def free_port(host: str) -> int:
    """A port free on both conductor addresses (they share it: DNS carries no port)."""
    for _ in range(20):
        with socket.socket() as first:
            first.bind((host, 0))
            port: int = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind((ADDRESSES[1], port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free on both addresses")


class SteadyCreates:
    """Creates one server every ``interval`` seconds, in a thread, until stopped."""

    def __init__(self, api: Service, token: str) -> None:
        self._api, self._token = api, token
        self.ids: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-creates")

    def __enter__(self) -> SteadyCreates:
        self._thread.start()
        return self

    def _run(self) -> None:
        with grpc.insecure_channel(self._api.address) as channel:
            stub = Authed(servers_pb2_grpc.ServersStub(channel), self._token)
            i = 0
            while not self._stop.wait(0.05):
                request = servers_pb2.CreateServerRequest(
                    name=f"steady-{i}", flavor_ref="m1.tiny", image_ref="nova-tiny"
                )
                try:
                    self.ids.extend(stub.CreateServer(request, timeout=10).server_ids)
                except grpc.RpcError as exc:  # the api must accept every one: recorded
                    self.errors.append(f"{exc.code().name}: {exc.details()}")
                i += 1

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.fixture
def dns() -> Iterator[LoopbackDns]:
    server = LoopbackDns(NAME, ADDRESSES[:1])
    yield server
    server.close()


def placed_lines(service: Service) -> int:
    return sum(1 for line in service.log().splitlines() if "placed " in line and " servers" in line)


def states(url: str) -> dict[str, int]:
    db = Database(url)
    try:
        with db.begin_read() as c:
            rows = c.execute(
                select(INSTANCES.c.vm_state, func.count()).group_by(INSTANCES.c.vm_state)
            )
            return {state: count for state, count in rows}
    finally:
        db.close()


def test_a_conductor_added_takes_builds_and_one_removed_loses_nothing(
    postgres_url: str, dns: LoopbackDns, tmp_path: Path
) -> None:
    _, token = issue_token(postgres_url, "demo")
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML)
    services = ServiceSet(
        tmp_path,
        env={
            "NOVA_GRPC_DATABASE_URL": postgres_url,
            "NOVA_GRPC_QUOTA_INSTANCES": "-1", "NOVA_GRPC_QUOTA_CORES": "-1",
            "NOVA_GRPC_QUOTA_RAM": "-1",
            "GRPC_DNS_RESOLVER": "ares",  # the resolver that takes a DNS server in the target
        },
    )  # fmt: skip
    port = free_port(ADDRESSES[0])
    target = dns.target(port)
    try:
        first = services.start(
            "conductor1", "services.conductor",
            ["--listen", f"{ADDRESSES[0]}:{port}", *CONDUCTOR_ARGS],
        )  # fmt: skip
        for i in (1, 2):
            services.start(
                f"compute{i}", "services.compute",
                ["--listen", "127.0.0.1:0", "--conductor-addresses", target,
                 "--host", f"scale-{i}", "--libvirt-uri", f"test://{node}",
                 "--instance-name-template", "%(uuid)s", "--disk-allocation-ratio", "8",
                 "--instances-path", str(tmp_path / f"instances{i}")],
            )  # fmt: skip
        api = services.start(
            "api", "services.api",
            ["--listen", "127.0.0.1:0", "--conductor-addresses", target,
             "--conductor-streams", "4"],
        )  # fmt: skip

        with SteadyCreates(api, token) as creates:
            wait_until(lambda: len(creates.ids) >= 20, 30, "the first creates")
            assert placed_lines(first) > 0

            # scale out: a second conductor, and the name now answers with both
            second = services.start(
                "conductor2", "services.conductor",
                ["--listen", f"{ADDRESSES[1]}:{port}", *CONDUCTOR_ARGS],
            )  # fmt: skip
            dns.set_addresses(ADDRESSES)
            wait_until(lambda: placed_lines(second) > 0, 30, "the new conductor to place builds")

            # scale in: the first leaves the name (as a terminating pod leaves its Service),
            # then stops; creates go on meanwhile
            dns.set_addresses(ADDRESSES[1:])
            first.process.terminate()
            assert first.process.wait(timeout=30) == 0, first.log()
            after_stop = len(creates.ids)
            wait_until(lambda: len(creates.ids) >= after_stop + 20, 30, "creates after the stop")

        assert creates.errors == []
        total = len(creates.ids)

        def settled() -> bool:
            return states(postgres_url).get("active", 0) == total

        wait_until(settled, 60, f"all {total} servers ACTIVE")
        assert states(postgres_url) == {"active": total}
        # the first conductor ended streams itself (by age, then draining) rather than having
        # them cut; the second placed builds before the first was gone, and after it
        assert "ended here" in first.log()
        assert placed_lines(second) > 1
        assert all(s.process.poll() is None for s in services.services if s is not first)
    finally:
        codes = services.stop()
    assert set(codes.values()) <= {0}, codes
