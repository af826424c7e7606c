"""The control-plane cost of the overlay per port: the conductor derives every compute
host's network state (flood lists, uplinks, floating bindings) from the database after a
change. Measured on SQLite with one host holding 500 ports on 50 networks that 9 other hosts
share (2,500 live ports in all); the round is what every server that comes or goes costs
(coalesced over 100 ms), so its time per port is the figure."""

from __future__ import annotations

import shutil
import statistics
import time
import uuid
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from services.common import ipam
from services.common.db import instances as instance_repo
from services.common.db import networks as network_repo
from services.common.db import overlay as overlay_repo
from services.common.db import placement
from services.common.db.engine import Database
from services.common.db.migrate import upgrade
from services.common.domain import (
    ComputeNodeReport,
    Flavor,
    Instance,
    PowerState,
    VmState,
    utcnow,
)
from services.common.request_spec import StoredSpec

TINY = Flavor("1", "m1.tiny", 1, 512, 1)
IMAGE = "5e0c0f1c-7a7e-4c51-9b0e-6e6f76612d31"
HOSTS, NETWORKS, BIG_HOST_PORTS, OTHER_PORTS, ROUNDS = 10, 50, 500, 2000, 10


def _seed(db: Database) -> None:
    now = utcnow()
    with db.begin() as connection:
        for h in range(HOSTS):
            placement.upsert_compute_node(connection, ComputeNodeReport(
                f"host-{h}", f"host-{h}", f"127.0.0.1:{h + 1}", 64, 262144, 10000, "QEMU",
                "x86_64", "nova", underlay_address=f"192.0.2.{h + 1}"), now=now)  # fmt: skip
        networks = []
        for n in range(NETWORKS):
            cidr = IPv4Network(f"10.{n}.0.0/16")
            made = network_repo.create_network(connection, network_repo.NewNetwork(
                "bench", f"net-{n}", cidr, cidr.network_address + 1, (),
                ipam.default_pools(cidr, cidr.network_address + 1)), now)  # fmt: skip
            assert made is not None
            networks.append(made)
        placed = [("host-0", i) for i in range(BIG_HOST_PORTS)]
        placed += [(f"host-{1 + i % (HOSTS - 1)}", BIG_HOST_PORTS + i) for i in range(OTHER_PORTS)]
        rows = [
            Instance(uuid=str(uuid.uuid4()), id=None, display_name=f"b{i}", project_id="bench",
                     flavor=TINY, image_id=IMAGE, reservation_id=f"r-{i}",
                     vm_state=VmState.ACTIVE, task_state=None, power_state=PowerState.RUNNING,
                     host=host, node=host, metadata={}, created_at=now,
                     request_spec=StoredSpec().to_json())
            for host, i in placed
        ]  # fmt: skip
        instance_repo.insert_instances(connection, rows)
        network_repo.insert_ports(connection, [
            network_repo.NewPort(row.uuid, networks[i % NETWORKS].id, 0,
                                 f"fa:16:3e:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                                 IPv4Address(f"10.{i % NETWORKS}.{i // 250}.{i % 250 + 2}"))
            for i, row in enumerate(rows)
        ], now)  # fmt: skip


def run_host_networks(workdir: Path) -> list[dict[str, Any]]:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    url = f"sqlite:///{workdir / 'bench.sqlite'}"
    upgrade(url)
    db = Database(url)
    try:
        _seed(db)
        timings = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            with db.begin() as connection:
                states = overlay_repo.host_states(connection)
            timings.append(time.perf_counter() - started)
        assert len(states["host-0"].overlay) == NETWORKS
    finally:
        db.close()
    ports = BIG_HOST_PORTS + OTHER_PORTS
    median = statistics.median(timings)
    where = (f"SQLite; {HOSTS} hosts, {NETWORKS} networks, one host with {BIG_HOST_PORTS} "
             f"ports, {ports} live ports in all; median of {ROUNDS} rounds")  # fmt: skip
    return [
        {"figure": "host network states derived for every host (one round)",
         "value": median, "unit": "s", "conditions": where},
        {"figure": "host network state round, per live port",
         "value": median / ports, "unit": "s", "conditions": where},
    ]  # fmt: skip
