"""Two conductor processes, twenty compute processes with tight capacity, one api, on the
local PostgreSQL: 300 creates at once never put a host over capacity, and every instance
ends ACTIVE or ERROR with a no-valid-host fault."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select

from services.cli.manage import issue_token
from services.common.db.engine import Database
from services.common.db.models import ALLOCATIONS, INSTANCES, NODES
from services.common.generated.novagrpc.internal.v1 import compute_pb2, compute_pb2_grpc
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from tests.support.auth import Authed
from tests.support.polling import wait_until
from tests.support.processes import Service, ServiceSet

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

COMPUTES = 20
CREATES = 300
# 16 vCPUs and 2 GiB per simulated host: four m1.tiny (512 MiB) at RAM ratio 1.0.
NODE_XML = (
    "<node><cpu><mhz>3000</mhz><model>x86_64</model><active>16</active><nodes>1</nodes>"
    "<sockets>1</sockets><cores>8</cores><threads>2</threads></cpu>"
    "<memory>2097152</memory></node>"
)
PER_HOST = 4


def start_fleet(services: ServiceSet, node: Path, tmp_path: Path) -> tuple[Service, list[Service]]:
    conductors = [
        services.start(f"conductor{i}", "services.conductor", ["--listen", "127.0.0.1:0"])
        for i in (1, 2)
    ]
    addresses = ",".join(c.address for c in conductors)
    computes = []
    for i in range(COMPUTES):
        args = [
            *("--listen", "127.0.0.1:0", "--conductor-addresses", addresses),
            *("--host", f"pg-{i:02d}", "--libvirt-uri", f"test://{node}"),
            *("--ram-allocation-ratio", "1.0", "--instance-name-template", "%(uuid)s"),
            *("--instances-path", str(tmp_path / f"instances{i}")),
        ]
        computes.append(services.start(f"compute{i}", "services.compute", args))
    api = services.start(
        "api", "services.api", ["--listen", "127.0.0.1:0", "--conductor-addresses", addresses]
    )
    return api, computes


def states(db: Database) -> Counter[str]:
    with db.begin_read() as c:
        rows = c.execute(select(INSTANCES.c.vm_state, func.count()).group_by(INSTANCES.c.vm_state))
        return Counter({state: count for state, count in rows})


def create_all(api: Service, token: str) -> list[str]:
    with grpc.insecure_channel(api.address) as channel:
        stub = Authed(servers_pb2_grpc.ServersStub(channel), token)

        def create(i: int) -> str:
            request = servers_pb2.CreateServerRequest(
                name=f"c{i}", flavor_ref="m1.tiny", image_ref="nova-tiny"
            )
            return str(stub.CreateServer(request, timeout=30).server_ids[0])

        with ThreadPoolExecutor(50) as pool:  # all at once
            return list(pool.map(create, range(CREATES)))


def test_two_conductors_never_overfill_a_host(postgres_url: str, tmp_path: Path) -> None:
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML)
    services = ServiceSet(
        tmp_path,
        env={
            "NOVA_GRPC_DATABASE_URL": postgres_url,
            "NOVA_GRPC_QUOTA_INSTANCES": "-1",
            "NOVA_GRPC_QUOTA_CORES": "-1",
            "NOVA_GRPC_QUOTA_RAM": "-1",
        },
    )
    db = Database(postgres_url)
    try:
        api, computes = start_fleet(services, node, tmp_path)

        def registered() -> bool:
            with db.begin_read() as c:
                return c.execute(select(func.count()).select_from(NODES)).scalar() == COMPUTES

        wait_until(registered, 60, "every compute registers", interval=0.1)
        _, token = issue_token(postgres_url, "demo")
        ids = create_all(api, token)
        assert len(set(ids)) == CREATES
        wait_until(lambda: not states(db).get("building"), 120, "every build settles", interval=0.1)

        final = states(db)
        assert final["active"] == COMPUTES * PER_HOST, final  # every slot used, none twice
        assert final["error"] == CREATES - COMPUTES * PER_HOST, final
        with db.begin_read() as c:
            memory = (
                c.execute(
                    select(func.sum(ALLOCATIONS.c.memory_mb)).group_by(
                        ALLOCATIONS.c.compute_node_id
                    )
                )
                .scalars()
                .all()
            )
            hosts = c.execute(select(INSTANCES.c.host).where(INSTANCES.c.vm_state == "active"))
            active_per_host = Counter(h for (h,) in hosts)
        assert max(memory) <= PER_HOST * 512 and max(active_per_host.values()) <= PER_HOST

        with grpc.insecure_channel(api.address) as channel:
            stub = Authed(servers_pb2_grpc.ServersStub(channel), token)
            listed = stub.ListServers(servers_pb2.ListServersRequest(), timeout=30).servers
        errors = [s for s in listed if s.status == servers_pb2.SERVER_STATUS_ERROR]
        assert errors and all(s.fault.message.startswith("No valid host was found") for s in errors)
        for compute in computes:  # no compute ever had to refuse a build for lack of room
            with services.channel(compute) as channel:
                status = compute_pb2_grpc.ComputeStub(channel).GetComputeStatus(
                    compute_pb2.GetComputeStatusRequest(), timeout=5
                )
            assert status.builds_failed == 0 and status.instances <= PER_HOST
    finally:
        db.close()
        codes = services.stop()
    assert set(codes.values()) == {0}, codes
