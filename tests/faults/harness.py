"""A fleet of real processes on the local PostgreSQL, a workload of accepted creates, faults
injected in the middle, and the audit afterwards: every accepted instance ends ACTIVE or ERROR
with a fault, none duplicated, none lost, no leaked domain, disk, allocation, port or
address (each workload server has a port on its project's default network)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from sqlalchemy import func, select

from services.cli.manage import image_from_files, issue_token, register_image
from services.common.db.engine import Database
from services.common.db.models import ALLOCATIONS, FAULTS, INSTANCES, PORTS
from services.common.generated.novagrpc.internal.v1 import compute_pb2, compute_pb2_grpc
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from services.compute.virt.images import InstanceStorage, qemu_img
from tests.support.auth import Authed
from tests.support.hosts import NODE_XML
from tests.support.processes import ServiceSet

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}  # fmt: skip
FAST_CONDUCTOR = ["--reconcile-interval", "1", "--scheduling-grace", "3",
                  "--service-down-time", "6"]  # fmt: skip
FAST_COMPUTE = ["--heartbeat-interval", "1", "--build-handback-grace", "4",
                "--sync-power-state-interval", "2", "--max-concurrent-builds", "4",
                "--disk-allocation-ratio", "100", "--ram-allocation-ratio", "4"]  # fmt: skip


@dataclass
class Report:
    fault: str
    accepted: int = 0
    active: int = 0
    error: int = 0
    lost: int = 0
    duplicated: int = 0
    leaked: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return (
            self.accepted > 0 and self.lost == 0 and self.duplicated == 0 and self.leaked == 0
            and self.active + self.error == self.accepted
        )  # fmt: skip


class Fleet:
    def __init__(self, workdir: Path, database_url: str) -> None:
        self.workdir = workdir
        self.url = database_url
        node = workdir / "node.xml"
        node.write_text(NODE_XML)
        self.node = node
        store = workdir / "images"
        store.mkdir(exist_ok=True)
        qemu_img("create", "-q", "-f", "qcow2", str(store / "base.qcow2"), "64M")
        # a real disk per instance: qemu-img work that makes builds take a while
        register_image(database_url, image_from_files("fault-disk", store / "base.qcow2",
                                                      disk_format="qcow2"))  # fmt: skip
        _, self.token = issue_token(database_url, "faults")
        self.services = ServiceSet(
            workdir,
            env={"NOVA_GRPC_DATABASE_URL": database_url, "NOVA_GRPC_QUOTA_INSTANCES": "-1",
                 "NOVA_GRPC_QUOTA_CORES": "-1", "NOVA_GRPC_QUOTA_RAM": "-1",
                 "NOVA_GRPC_RATE_LIMIT_PER_SECOND": "0"},
        )  # fmt: skip
        self.ports: dict[str, str] = {}

    def start(self, name: str, computes: int = 2) -> None:
        """(Re)start a service on the port it had, or the whole fleet when ``name`` is all."""
        if name == "all":
            self.start("conductor")
            for i in range(computes):
                self.start(f"compute{i}")
            self.start("api")
            return
        listen = self.ports.get(name, "127.0.0.1:0")
        conductor = self.ports.get("conductor", "")
        if name == "conductor":
            args = ["--listen", listen, *FAST_CONDUCTOR]
            module = "services.conductor"
        elif name.startswith("compute"):
            args = ["--listen", listen, "--conductor-addresses", conductor, "--host",
                    f"fault-{name}", "--libvirt-uri", f"test://{self.node}",
                    "--instances-path", str(self.workdir / name), *FAST_COMPUTE]  # fmt: skip
            module = "services.compute"
        else:
            args = ["--listen", listen, "--conductor-addresses", conductor]
            module = "services.api"
        service = self.services.start(name, module, args)
        self.ports[name] = service.address

    def kill(self, name: str) -> None:
        service = self.services.service_named(name)
        service.process.send_signal(signal.SIGKILL)
        service.process.wait(10)
        self.services.services.remove(service)

    def stop(self) -> None:
        self.services.stop()


class Workload:
    """Creates from several clients, each retried with one client_request_id until it is
    accepted: a create the api recorded is never made twice, however often it is retried."""

    def __init__(self, fleet: Fleet, *, creates: int, per_create: int, clients: int = 8) -> None:
        self.fleet = fleet
        self.requests = [f"fault-{uuid.uuid4().hex[:8]}-{i}" for i in range(creates)]
        self.per_create = per_create
        self.accepted: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._client, args=(self.requests[i::clients],), daemon=True)
            for i in range(clients)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)

    @property
    def count(self) -> int:
        with self.lock:
            return sum(len(ids) for ids in self.accepted.values())

    def _client(self, keys: list[str]) -> None:
        for key in keys:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                address = self.fleet.ports["api"]
                try:
                    with grpc.insecure_channel(address) as channel:
                        stub = Authed(servers_pb2_grpc.ServersStub(channel), self.fleet.token)
                        reply = stub.CreateServer(
                            servers_pb2.CreateServerRequest(
                                name=key, flavor_ref="m1.tiny", image_ref="fault-disk",
                                min_count=self.per_create, max_count=self.per_create,
                                client_request_id=key,
                            ),
                            timeout=10,
                        )  # fmt: skip
                except grpc.RpcError as exc:
                    if exc.code() not in RETRYABLE:  # type: ignore[attr-defined]
                        raise
                    time.sleep(0.3)
                    continue
                with self.lock:
                    self.accepted[key] = list(reply.server_ids)
                break


def settle(fleet: Fleet, timeout: float = 150) -> None:
    """Until nothing builds or waits for a task, and every ACTIVE instance's domain runs on
    its host (a compute that restarted reports the guests it lost)."""
    db = Database(fleet.url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                with db.begin_read() as c:
                    busy = c.execute(
                        select(func.count()).where(
                            (INSTANCES.c.vm_state == "building")
                            | INSTANCES.c.task_state.is_not(None)
                        )
                    ).scalar()
                    rows = c.execute(
                        select(INSTANCES.c.uuid, INSTANCES.c.host).where(
                            INSTANCES.c.vm_state == "active"
                        )
                    )
                    active = {(u, h) for u, h in rows}
            except Exception:
                busy = 1
            if busy == 0 and not (active - running_domains(compute_statuses(fleet))):
                return
            time.sleep(0.5)
        raise TimeoutError("instances still busy (or ACTIVE without a domain) after the fault")
    finally:
        db.close()


def compute_statuses(fleet: Fleet) -> dict[str, compute_pb2.ComputeStatus]:
    """GetComputeStatus of every running compute service, by service name."""
    statuses = {}
    for service in [s for s in fleet.services.services if s.name.startswith("compute")]:
        with fleet.services.channel(service) as channel:
            statuses[service.name] = compute_pb2_grpc.ComputeStub(channel).GetComputeStatus(
                compute_pb2.GetComputeStatusRequest(), timeout=10
            )
    return statuses


def running_domains(statuses: Mapping[str, compute_pb2.ComputeStatus]) -> set[tuple[str, str]]:
    """(uuid, host) of every domain of ours the computes' hypervisors have."""
    return {(u, status.host) for status in statuses.values() for u in status.domain_uuids}


def audit(fleet: Fleet, workload: Workload, report: Report) -> Report:
    accepted = [u for ids in workload.accepted.values() for u in ids]
    report.accepted = len(accepted)
    report.duplicated = len(accepted) - len(set(accepted))
    db = Database(fleet.url)
    try:
        with db.begin_read() as c:
            rows = {
                r.uuid: r
                for r in c.execute(
                    select(INSTANCES.c.uuid, INSTANCES.c.vm_state, INSTANCES.c.host).where(
                        INSTANCES.c.project_id == "faults"
                    )
                )
            }  # fmt: skip
            faulted = {u for (u,) in c.execute(select(FAULTS.c.instance_uuid))}
            allocated = Counter(u for (u,) in c.execute(select(ALLOCATIONS.c.instance_uuid)))
            ported = [
                (u, (n, a))
                for u, n, a in c.execute(
                    select(PORTS.c.instance_uuid, PORTS.c.network_id, PORTS.c.fixed_ip)
                )
            ]
    finally:
        db.close()
    # a create recorded twice (a retry that made new servers) shows as servers nobody accepted
    report.duplicated += len(set(rows) - set(accepted))
    statuses = compute_statuses(fleet)  # once: for the lost and for the leaked
    running = running_domains(statuses)
    for u in accepted:
        row = rows.get(u)
        if row is None or row.vm_state not in ("active", "error"):
            report.lost += 1
        elif row.vm_state == "active" and (u, row.host) not in running:
            report.lost += 1
            report.notes.append(f"{u} ACTIVE without a running domain")
        elif row.vm_state == "active":
            report.active += 1
        elif u in faulted:
            report.error += 1
        else:
            report.lost += 1
            report.notes.append(f"{u} in ERROR without a fault")
    # allocations: only active instances (and errors still on a host) may hold one, once
    holders = {u for u, r in rows.items() if r.vm_state == "active"
               or (r.vm_state == "error" and r.host)}  # fmt: skip
    report.leaked += sum(1 for u, n in allocated.items() if u not in holders or n > 1)
    # ports (and so addresses): only servers not deleted hold them, one per NIC
    live = {u for u, r in rows.items() if r.vm_state != "deleted"}
    report.leaked += sum(1 for u, _ in ported if u not in live)
    report.leaked += len(ported) - len({a for _, a in ported})
    report.leaked += _leaked_on_hosts(fleet, statuses, rows)
    return report


def _leaked_on_hosts(
    fleet: Fleet, statuses: Mapping[str, compute_pb2.ComputeStatus], rows: Mapping[str, object]
) -> int:
    """Domains and instance directories that no live instance of that host owns."""
    leaked = 0
    for name, status in statuses.items():
        owned = {u for u, r in rows.items()
                 if getattr(r, "host", None) == status.host
                 and getattr(r, "vm_state", "") != "deleted"}  # fmt: skip
        leaked += len(set(status.domain_uuids) - owned)
        # the compute's own view of its instance directories (empty when there is none)
        leaked += len(InstanceStorage(fleet.workdir / name).known_instances() - owned)
    return leaked


def stop_postgres_for(seconds: float) -> None:
    subprocess.run(["pg_ctlcluster", "15", "main", "stop", "-m", "fast"], check=True, timeout=60)
    try:
        time.sleep(seconds)
    finally:
        subprocess.run(["pg_ctlcluster", "15", "main", "start"], check=True, timeout=60)
