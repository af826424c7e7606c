"""The datapath's side of a security-group change: a rule added to the group of 100 ports
on one host, applied by the Linux datapath (the whole nftables ruleset replaced in one
transaction), timed over repeated changes. Runs in a network namespace of its own (a host
of the benchmark's making): no packet leaves it."""

from __future__ import annotations

import statistics
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from services.common.networking import (
    AddressSet,
    Direction,
    IpProtocol,
    NetworkSpec,
    PortSpec,
    SecurityGroupRule,
    SubnetSpec,
)
from services.compute.net.linuxbridge import LinuxBridgeDriver
from tests.support.netns import inside, namespaces

PORTS, NETWORKS, CHANGES = 100, 4, 30


# The group all the ports are in, letting its members in (its address set, once per host).
MEMBERS = AddressSet("g-members", tuple(IPv4Address(f"10.{n}.0.{i + 10}") for n in range(NETWORKS)
                                        for i in range(PORTS // NETWORKS)))  # fmt: skip


def _ports() -> list[PortSpec]:
    rules = (
        SecurityGroupRule("egress", Direction.EGRESS),
        SecurityGroupRule("members", Direction.INGRESS, remote_group_id=MEMBERS.group_id),
    )
    ports = []
    for i in range(PORTS):
        n = i % NETWORKS
        subnet = SubnetSpec(IPv4Network(f"10.{n}.0.0/24"), IPv4Address(f"10.{n}.0.1"))
        ports.append(PortSpec(
            port_id=f"{i:08x}-0000-4000-8000-000000000000", instance_uuid=f"vm-{i}",
            network=NetworkSpec(f"net-{n}", f"net-{n}", 100 + n, subnet),
            mac=f"fa:16:3e:00:{i // 256:02x}:{i % 256:02x}",
            fixed_ip=IPv4Address(f"10.{n}.0.{i // NETWORKS + 10}"), security_rules=rules,
        ))  # fmt: skip
    return ports


def run_networking(workdir: Path) -> list[dict[str, Any]]:
    ports = _ports()
    timings: list[float] = []
    with namespaces("bench-host") as ns, inside(ns["bench-host"]):
        driver = LinuxBridgeDriver(state_dir=workdir)
        plug_started = time.perf_counter()
        for port in ports:
            driver.plug(port, [MEMBERS])
        plugged = time.perf_counter() - plug_started
        try:
            for change in range(CHANGES):
                rule = SecurityGroupRule(f"web-{change}", Direction.INGRESS, IpProtocol.TCP,
                                         8000 + change, 8000 + change)  # fmt: skip
                changed = [p.with_rules((*p.security_rules, rule)) for p in ports]
                started = time.perf_counter()
                assert driver.update_rules(changed) == PORTS
                timings.append(time.perf_counter() - started)
        finally:
            for port in ports:
                driver.unplug(port)
    ordered = sorted(timings)
    where = (
        f"{PORTS} ports on {NETWORKS} networks of one host (a network namespace), Linux "
        f"datapath, the whole nftables ruleset replaced per change, {CHANGES} changes"
    )
    return [
        {"figure": "security-group rule applied to 100 ports, p50",
         "value": statistics.median(ordered), "unit": "s", "conditions": where},
        {"figure": "security-group rule applied to 100 ports, p99",
         "value": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
         "unit": "s", "conditions": where},
        {"figure": "plugging 100 ports (bridges, DHCP, rules)", "value": plugged, "unit": "s",
         "conditions": f"{where}; one port at a time, as builds arrive"},
    ]  # fmt: skip
