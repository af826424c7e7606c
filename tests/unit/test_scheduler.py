from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from services.common.domain import GroupPolicy, HostState, Resources
from services.common.request_spec import StoredSpec, parse_availability_zone
from services.conductor.build_path.types import no_valid_host_message
from services.conductor.scheduler.filters.affinity import ServerGroupAffinityFilter
from services.conductor.scheduler.filters.anti_affinity import ServerGroupAntiAffinityFilter
from services.conductor.scheduler.filters.availability_zone import AvailabilityZoneFilter
from services.conductor.scheduler.filters.capacity import CapacityFilter
from services.conductor.scheduler.filters.compute import ComputeFilter
from services.conductor.scheduler.filters.different_host import DifferentHostFilter
from services.conductor.scheduler.filters.image_properties import ImagePropertiesFilter
from services.conductor.scheduler.filters.retry import RetryFilter
from services.conductor.scheduler.filters.same_host import SameHostFilter
from services.conductor.scheduler.registry import (
    DEFAULT_FILTERS,
    DEFAULT_WEIGHTS,
    build_filters,
    build_weighers,
    parse_weights,
)
from services.conductor.scheduler.request import RequestSpec
from services.conductor.scheduler.scheduler import Scheduler, normalised_total
from services.conductor.scheduler.weighers.build_failure import BuildFailureWeigher
from services.conductor.scheduler.weighers.cpu import CPUWeigher
from services.conductor.scheduler.weighers.disk import DiskWeigher
from services.conductor.scheduler.weighers.num_instances import NumInstancesWeigher
from services.conductor.scheduler.weighers.ram import RAMWeigher
from services.conductor.scheduler.weighers.soft_affinity import ServerGroupSoftAffinityWeigher
from services.conductor.scheduler.weighers.soft_anti_affinity import (
    ServerGroupSoftAntiAffinityWeigher,
)

TINY = Resources(1, 512, 1)
_ids = iter(range(1, 1_000_000))


def host(name: str = "h1", vcpus: int = 4, memory_mb: int = 4096, disk_gb: int = 40,
         **extra: object) -> HostState:  # fmt: skip
    state = HostState(
        node_id=next(_ids),
        host=name,
        hypervisor_hostname=name,
        rpc_address=f"{name}:1",
        total=Resources(vcpus, memory_mb, disk_gb),
        used=Resources(0, 0, 0),
        cpu_allocation_ratio=1.0,
        ram_allocation_ratio=1.0,
        disk_allocation_ratio=1.0,
        generation=0,
        extra={"cpu_arch": "x86_64", "hypervisor_type": "qemu"},
    )
    for key, value in extra.items():
        setattr(state, key, value)
    return state


def spec(uuid: str = "u1", **fields: object) -> RequestSpec:
    values: dict[str, object] = {"instance_uuid": uuid, "project_id": "p", "resources": TINY}
    values.update(fields)
    return RequestSpec(**values)  # type: ignore[arg-type]


# -- filters, one test each ----------------------------------------------------------------


def test_compute_filter_drops_disabled_and_down_hosts() -> None:
    f = ComputeFilter()
    assert f.passes(host(), spec())
    assert not f.passes(host(enabled=False), spec())
    assert not f.passes(host(is_up=False), spec())


def test_capacity_filter_checks_every_resource_after_ratios() -> None:
    f = CapacityFilter()
    assert f.passes(host(), spec())
    assert not f.passes(host(vcpus=0), spec())
    assert not f.passes(host(memory_mb=256), spec())
    assert not f.passes(host(disk_gb=0), spec())
    assert f.passes(host(memory_mb=256, ram_allocation_ratio=2.0), spec())


def test_availability_zone_filter() -> None:
    f = AvailabilityZoneFilter()
    assert f.passes(host(availability_zone="az1"), spec())
    assert f.passes(host(availability_zone="az1"), spec(availability_zone="az1"))
    assert not f.passes(host(availability_zone="az2"), spec(availability_zone="az1"))


def test_affinity_filter_follows_the_group_once_it_has_a_host() -> None:
    f = ServerGroupAffinityFilter()
    first = spec(group_uuid="g", group_policy=GroupPolicy.AFFINITY, group_hosts={})
    later = spec(group_uuid="g", group_policy=GroupPolicy.AFFINITY, group_hosts={"a": 1})
    assert f.passes(host("b"), first)
    assert f.passes(host("a"), later) and not f.passes(host("b"), later)
    assert f.passes(host("b"), spec(group_policy=GroupPolicy.ANTI_AFFINITY, group_hosts={"a": 1}))


def test_anti_affinity_filter_keeps_members_apart() -> None:
    f = ServerGroupAntiAffinityFilter()
    s = spec(group_uuid="g", group_policy=GroupPolicy.ANTI_AFFINITY, group_hosts={"a": 1})
    assert not f.passes(host("a"), s) and f.passes(host("b"), s)
    soft = spec(group_policy=GroupPolicy.SOFT_ANTI_AFFINITY, group_hosts={"a": 1})
    assert f.passes(host("a"), soft)  # soft policies are weighers, not filters


def test_same_host_filter() -> None:
    f = SameHostFilter()
    assert f.passes(host("a"), spec())
    assert f.passes(host("a"), spec(same_host_hosts=frozenset({"a"})))
    assert not f.passes(host("b"), spec(same_host_hosts=frozenset({"a"})))
    assert not f.passes(host("a"), spec(same_host_hosts=frozenset()))  # named, but unplaced


def test_different_host_filter() -> None:
    f = DifferentHostFilter()
    assert f.passes(host("a"), spec())
    assert not f.passes(host("a"), spec(different_host_hosts=frozenset({"a"})))
    assert f.passes(host("b"), spec(different_host_hosts=frozenset({"a"})))


def test_retry_filter_skips_hosts_already_tried() -> None:
    f = RetryFilter()
    assert not f.passes(host("a"), spec(ignore_hosts=frozenset({"a"})))
    assert f.passes(host("b"), spec(ignore_hosts=frozenset({"a"})))


def test_image_properties_filter() -> None:
    f = ImagePropertiesFilter()
    x86 = host(extra={"cpu_arch": "x86_64", "hypervisor_type": "qemu"})
    i686 = host(extra={"cpu_arch": "i686", "hypervisor_type": "test"})
    assert f.passes(x86, spec(image_properties={"hw_architecture": "amd64"}))
    assert f.passes(x86, spec(image_properties={"hw_architecture": "i386"}))  # 64-bit runs 32
    assert not f.passes(i686, spec(image_properties={"hw_architecture": "x86_64"}))
    assert f.passes(x86, spec(image_properties={"img_hv_type": "QEMU"}))
    assert not f.passes(i686, spec(image_properties={"img_hv_type": "qemu"}))
    assert f.passes(i686, spec())


# -- weighers, one test each ---------------------------------------------------------------


def test_resource_weighers_score_free_capacity() -> None:
    small, big = host(vcpus=2, memory_mb=1024, disk_gb=10), host(vcpus=8, memory_mb=8192,
                                                                 disk_gb=80)  # fmt: skip
    for weigher in (RAMWeigher(), CPUWeigher(), DiskWeigher()):
        assert weigher.raw(big, spec()) > weigher.raw(small, spec()), weigher.name


def test_num_instances_weigher_counts_instances() -> None:
    w = NumInstancesWeigher(-1.0)
    assert w.raw(host(instance_count=5), spec()) == 5.0 and w.multiplier == -1.0


def test_build_failure_weigher_penalises_failing_hosts() -> None:
    w = BuildFailureWeigher()
    assert w.raw(host(failed_builds=3), spec()) < w.raw(host(failed_builds=0), spec())


def test_soft_group_weighers() -> None:
    hosts = {"a": 2, "b": 0}
    soft = spec(group_policy=GroupPolicy.SOFT_AFFINITY, group_hosts=hosts)
    anti = spec(group_policy=GroupPolicy.SOFT_ANTI_AFFINITY, group_hosts=hosts)
    assert ServerGroupSoftAffinityWeigher().raw(host("a"), soft) == 2.0
    assert ServerGroupSoftAffinityWeigher().raw(host("a"), anti) == 0.0
    assert ServerGroupSoftAntiAffinityWeigher().raw(host("a"), anti) == -2.0
    assert ServerGroupSoftAntiAffinityWeigher().raw(host("b"), anti) == 0.0


def test_normalisation_maps_each_weigher_onto_zero_one() -> None:
    raw = np.array([[0.0, 50.0, 100.0], [7.0, 7.0, 7.0]])
    total = normalised_total(raw, np.array([2.0, 1000.0]))
    assert total.tolist() == [0.0, 1.0, 2.0]  # equal scores (row 2) weigh nothing


# -- the scheduler -------------------------------------------------------------------------


def scheduler(**kw: object) -> Scheduler:
    return Scheduler(
        build_filters(DEFAULT_FILTERS),
        build_weighers(parse_weights(DEFAULT_WEIGHTS)),
        rng=random.Random(0),
        **kw,  # type: ignore[arg-type]
    )


def test_a_batch_spreads_by_free_ram_and_never_overfills() -> None:
    hosts = [host("a", memory_mb=1024), host("b", memory_mb=2048)]
    decisions = scheduler().place([spec(f"u{i}") for i in range(7)], hosts)
    placed = Counter(d.host.host for d in decisions if d.host is not None)
    assert placed == {"a": 2, "b": 4}
    assert decisions[0].host is not None and decisions[0].host.host == "b"  # most free first
    failed = [d for d in decisions if d.host is None]
    assert len(failed) == 1 and failed[0].rejected_by == {"CapacityFilter": 2}
    assert all(h.free.memory_mb >= 0 for h in hosts)


def test_alternates_are_the_next_best_hosts() -> None:
    hosts = [host(n, memory_mb=m) for n, m in (("a", 1024), ("b", 4096), ("c", 2048))]
    (decision,) = scheduler(max_attempts=3).place([spec()], hosts)
    assert decision.host is not None and decision.host.host == "b"
    assert [h.host for h in decision.alternates] == ["c", "a"]


def test_a_failing_host_is_avoided_while_others_fit() -> None:
    hosts = [host("a", memory_mb=8192, failed_builds=2), host("b", memory_mb=1024)]
    (decision,) = scheduler().place([spec()], hosts)
    assert decision.host is not None and decision.host.host == "b"


def test_anti_affinity_places_one_member_per_host_within_a_batch() -> None:
    hosts = [host(n) for n in "abc"]
    members = [
        spec(f"u{i}", group_uuid="g", group_policy=GroupPolicy.ANTI_AFFINITY) for i in range(4)
    ]
    decisions = scheduler().place(members, hosts)
    chosen = [d.host.host for d in decisions if d.host is not None]
    assert sorted(chosen) == ["a", "b", "c"]
    assert decisions[3].host is None
    assert decisions[3].rejected_by == {"ServerGroupAntiAffinityFilter": 3}


def test_affinity_keeps_a_batch_on_one_host() -> None:
    hosts = [host(n, memory_mb=4096) for n in "abc"]
    members = [spec(f"u{i}", group_uuid="g", group_policy=GroupPolicy.AFFINITY) for i in range(3)]
    decisions = scheduler().place(members, hosts)
    assert len({d.host.host for d in decisions if d.host is not None}) == 1


def test_soft_anti_affinity_spreads_but_never_refuses() -> None:
    hosts = [host(n, memory_mb=4096) for n in "ab"]
    members = [
        spec(f"u{i}", group_uuid="g", group_policy=GroupPolicy.SOFT_ANTI_AFFINITY) for i in range(4)
    ]
    decisions = scheduler().place(members, hosts)
    assert Counter(d.host.host for d in decisions if d.host is not None) == {"a": 2, "b": 2}


def test_forced_host_skips_filters_but_not_capacity_and_has_no_alternates() -> None:
    hosts = [host("a", enabled=False), host("b")]
    (forced,) = scheduler().place([spec(force_host="a")], hosts)
    assert forced.host is not None and forced.host.host == "a" and forced.alternates == []
    (full,) = scheduler().place([spec(force_host="a", resources=Resources(64, 1, 1))], hosts)
    assert full.host is None and full.rejected_by == {"CapacityFilter": 1}
    (unknown,) = scheduler().place([spec(force_host="zz")], hosts)
    assert unknown.host is None


def test_host_subset_size_spreads_concurrent_choices() -> None:
    chosen = {
        d.host.host
        for seed in range(20)
        for d in Scheduler(build_filters(DEFAULT_FILTERS), [RAMWeigher()], host_subset_size=3,
                           rng=random.Random(seed)).place(
            [spec()], [host(n, memory_mb=8192 - i) for i, n in enumerate("abcd")]
        )
        if d.host is not None
    }  # fmt: skip
    assert chosen == {"a", "b", "c"}  # any of the three best, never only one


def test_plain_and_constrained_specs_share_consumption() -> None:
    hosts = [host("a", memory_mb=1024)]
    decisions = scheduler().place(
        [spec("plain"), spec("hinted", different_host_hosts=frozenset({"zz"})), spec("third")],
        hosts,
    )
    assert [d.host is not None for d in decisions] == [True, True, False]


def test_no_valid_host_message_keeps_counts_for_admins() -> None:
    message, details = no_valid_host_message({"ComputeFilter": 1, "CapacityFilter": 2}, 3)
    assert message.startswith("No valid host was found")
    assert "CapacityFilter removed 2" in details and "ComputeFilter removed 1" in details
    message, _ = no_valid_host_message({}, 0)
    assert "no compute hosts" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", (None, None, None)), ("az1", ("az1", None, None)), ("az1:h1", ("az1", "h1", None)),
     (":h1", (None, "h1", None)), ("az1:h1:n1", ("az1", "h1", "n1"))],
)  # fmt: skip
def test_availability_zone_syntax(value: str, expected: tuple[str | None, ...]) -> None:
    assert parse_availability_zone(value) == expected


def test_stored_spec_round_trips() -> None:
    stored = StoredSpec(availability_zone="az", group="g", same_host=("x",), min_count=2,
                        alternates=("b", "c"), tried_hosts=("a",))  # fmt: skip
    assert StoredSpec.from_json(stored.to_json()) == stored
    assert StoredSpec.from_json(None) == StoredSpec()
    assert stored.with_attempt_on("b").tried_hosts == ("a", "b")


def test_registry_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown filters"):
        build_filters(["NoSuchFilter"])
    with pytest.raises(ValueError, match="NoSuchWeigher"):
        parse_weights(["NoSuchWeigher=1"])
