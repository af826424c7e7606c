"""Filters and weighers by name, so that settings can list which run and with what weight."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.conductor.scheduler.filters.affinity import ServerGroupAffinityFilter
from services.conductor.scheduler.filters.anti_affinity import ServerGroupAntiAffinityFilter
from services.conductor.scheduler.filters.availability_zone import AvailabilityZoneFilter
from services.conductor.scheduler.filters.base import HostFilter
from services.conductor.scheduler.filters.capacity import CapacityFilter
from services.conductor.scheduler.filters.compute import ComputeFilter
from services.conductor.scheduler.filters.different_host import DifferentHostFilter
from services.conductor.scheduler.filters.image_properties import ImagePropertiesFilter
from services.conductor.scheduler.filters.retry import RetryFilter
from services.conductor.scheduler.filters.same_host import SameHostFilter
from services.conductor.scheduler.weighers.base import HostWeigher
from services.conductor.scheduler.weighers.build_failure import BuildFailureWeigher
from services.conductor.scheduler.weighers.cpu import CPUWeigher
from services.conductor.scheduler.weighers.disk import DiskWeigher
from services.conductor.scheduler.weighers.num_instances import NumInstancesWeigher
from services.conductor.scheduler.weighers.ram import RAMWeigher
from services.conductor.scheduler.weighers.soft_affinity import ServerGroupSoftAffinityWeigher
from services.conductor.scheduler.weighers.soft_anti_affinity import (
    ServerGroupSoftAntiAffinityWeigher,
)

FILTERS: dict[str, type[HostFilter]] = {
    f.name: f  # type: ignore[misc]
    for f in (
        ComputeFilter,
        RetryFilter,
        AvailabilityZoneFilter,
        CapacityFilter,
        ImagePropertiesFilter,
        ServerGroupAffinityFilter,
        ServerGroupAntiAffinityFilter,
        SameHostFilter,
        DifferentHostFilter,
    )
}
# Cheap, selective filters first: most hosts leave early.
DEFAULT_FILTERS = tuple(FILTERS)

WEIGHERS: dict[str, type[HostWeigher]] = {
    w.name: w  # type: ignore[misc]
    for w in (
        RAMWeigher,
        CPUWeigher,
        DiskWeigher,
        NumInstancesWeigher,
        BuildFailureWeigher,
        ServerGroupSoftAffinityWeigher,
        ServerGroupSoftAntiAffinityWeigher,
    )
}
# Nova's defaults: spread by free RAM, CPU and disk; avoid failing hosts; soft group policies.
DEFAULT_WEIGHTS = (
    "RAMWeigher=1.0",
    "CPUWeigher=1.0",
    "DiskWeigher=1.0",
    "NumInstancesWeigher=0.0",
    "BuildFailureWeigher=1000000.0",
    "ServerGroupSoftAffinityWeigher=1.0",
    "ServerGroupSoftAntiAffinityWeigher=1.0",
)


def build_filters(names: Sequence[str]) -> list[HostFilter]:
    unknown = [n for n in names if n not in FILTERS]
    if unknown:
        raise ValueError(f"unknown filters {unknown}; known: {sorted(FILTERS)}")
    return [FILTERS[n]() for n in names]


def parse_weights(entries: Sequence[str]) -> dict[str, float]:
    weights: dict[str, float] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or name.strip() not in WEIGHERS:
            raise ValueError(
                f"weight {entry!r}: use <Weigher>=<multiplier>; known: {sorted(WEIGHERS)}"
            )
        weights[name.strip()] = float(value)
    return weights


def build_weighers(weights: Mapping[str, float]) -> list[HostWeigher]:
    return [WEIGHERS[name](multiplier) for name, multiplier in weights.items()]  # type: ignore[call-arg]
