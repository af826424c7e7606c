from __future__ import annotations

from services.common.domain import Resources
from services.conductor.build_task import no_valid_host_message
from services.conductor.scheduler.filters.capacity import CapacityFilter
from services.conductor.scheduler.filters.compute import ComputeFilter
from services.conductor.scheduler.request import RequestSpec
from services.conductor.scheduler.scheduler import Scheduler
from services.conductor.scheduler.weighers.ram import RAMWeigher
from tests.unit.test_domain import host

TINY = Resources(1, 512, 1)


def spec(uuid: str = "u1", resources: Resources = TINY) -> RequestSpec:
    return RequestSpec(uuid, "p", resources)


def test_compute_filter_drops_disabled_and_down_hosts() -> None:
    up, disabled, down = host(), host(), host()
    disabled.enabled = False
    down.is_up = False
    assert ComputeFilter().passes(up, spec())
    assert not ComputeFilter().passes(disabled, spec())
    assert not ComputeFilter().passes(down, spec())


def test_capacity_filter_checks_every_resource() -> None:
    assert CapacityFilter().passes(host(), spec())
    assert not CapacityFilter().passes(host(vcpus=0), spec())
    assert not CapacityFilter().passes(host(memory_mb=256), spec())
    assert not CapacityFilter().passes(host(disk_gb=0), spec())


def test_ram_weigher_prefers_free_memory() -> None:
    big, small = host(memory_mb=8192), host(memory_mb=2048)
    big.host, small.host = "big", "small"
    ordered = Scheduler([], [RAMWeigher()]).weigh([small, big], spec())
    assert [h.host for h in ordered] == ["big", "small"]
    stacked = Scheduler([], [RAMWeigher(-1.0)]).weigh([small, big], spec())
    assert [h.host for h in stacked] == ["small", "big"]


def test_place_consumes_so_a_batch_never_overfills_a_host() -> None:
    a, b = host(memory_mb=1024), host(memory_mb=1024)
    a.host, b.host = "a", "b"
    scheduler = Scheduler([ComputeFilter(), CapacityFilter()], [RAMWeigher()])
    decisions = scheduler.place([spec(f"u{i}") for i in range(5)], [a, b])
    placed = [d.host.host for d in decisions if d.host is not None]
    assert sorted(placed) == ["a", "a", "b", "b"]  # spread by free RAM, 2 each
    assert decisions[4].host is None
    assert decisions[4].rejected_by == {"CapacityFilter": 2}


def test_no_valid_host_message_keeps_counts_for_admins() -> None:
    message, details = no_valid_host_message({"ComputeFilter": 1, "CapacityFilter": 2}, 3)
    assert message.startswith("No valid host was found")
    assert "CapacityFilter removed 2" in details and "ComputeFilter removed 1" in details
    message, _ = no_valid_host_message({}, 0)
    assert "no compute hosts" in message
