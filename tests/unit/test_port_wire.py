"""Ports, their rules and the address sets those name, through every internal message that
carries them to a host: each set once per message, every rule and set back as it was."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import IPv4Address as A
from ipaddress import IPv4Network as N

import pytest

from services.common.builds import BuildImage, BuildSpec
from services.common.domain import Flavor, HostInstance, PowerState, Resources, VmState
from services.common.errors import InvalidArgument
from services.common.generated.novagrpc.internal.v1 import network_pb2
from services.common.networking import (
    AddressSet,
    Direction,
    IpProtocol,
    NetworkSpec,
    PortSpec,
    SecurityGroupRule,
    SubnetSpec,
)
from services.common.rpc.compute_client import build_request
from services.common.rpc.host_inventory import host_instances_from_proto, host_instances_to_proto
from services.common.rpc.ports import address_sets_from_proto, port_from_proto, port_to_proto
from services.compute.servicer import builds_from_proto

pytestmark = pytest.mark.timeout(10)

NET = NetworkSpec("net-1", "lan", 9, SubnetSpec(N("10.9.0.0/24"), A("10.9.0.1")))
RULES = (
    SecurityGroupRule("any-out", Direction.EGRESS),
    SecurityGroupRule("web", Direction.INGRESS, IpProtocol.TCP, 80, 81,
                      remote_cidr=N("192.0.2.0/24")),
    SecurityGroupRule("members", Direction.INGRESS, remote_group_id="g-default"),
    SecurityGroupRule("db", Direction.EGRESS, IpProtocol.TCP, 5432, 5432, remote_group_id="g-db"),
)  # fmt: skip
DEFAULT = AddressSet("g-default", tuple(A(f"10.9.0.{i}") for i in range(10, 20)))
DB = AddressSet("g-db", ())  # no member yet: an empty set, which matches nothing


def port(n: int) -> PortSpec:
    return PortSpec(f"port-{n}", f"00000000-0000-0000-0000-{n:012d}", NET,
                    f"fa:16:3e:00:00:{n:02x}", A(f"10.9.0.{n + 10}"), RULES)  # fmt: skip


def build(n: int) -> BuildSpec:
    p = port(n)
    return BuildSpec(uuid=p.instance_uuid, instance_id=n, display_name=f"vm-{n}", project_id="p",
                     flavor=Flavor("1", "m1.tiny", 1, 512, 1),
                     image=BuildImage("img", "img", "raw", "", ""),
                     created_at=datetime(2026, 1, 1, tzinfo=UTC), ports=(p,),
                     address_sets=(DB, DEFAULT))  # fmt: skip


def test_a_ports_rules_keep_their_cidr_or_their_group_by_id() -> None:
    message = port_to_proto(port(1))
    by_id = {r.rule_id: r for r in message.rules}
    assert (by_id["web"].remote_cidr, by_id["web"].remote_group_id) == ("192.0.2.0/24", "")
    assert (by_id["members"].remote_cidr, by_id["members"].remote_group_id) == ("", "g-default")
    assert (by_id["any-out"].remote_cidr, by_id["any-out"].remote_group_id) == ("", "")
    assert port_from_proto(message).security_rules == RULES


def test_a_build_batch_carries_each_set_once_and_each_build_gets_the_sets_it_names() -> None:
    builds = [build(n) for n in range(1, 6)]
    request = build_request(builds)
    assert [s.group_id for s in request.address_sets] == ["g-db", "g-default"]  # once each
    assert request.SerializeToString().count(b"10.9.0.10") == 1  # a member no port here has
    back = builds_from_proto(request)
    assert back == builds
    assert back[0].address_sets[1] is back[4].address_sets[1]  # one object, shared


def test_a_hosts_inventory_carries_each_set_once() -> None:
    def on_host(n: int) -> HostInstance:
        return HostInstance(port(n).instance_uuid, VmState.ACTIVE, None, PowerState.RUNNING,
                            Resources(1, 512, 1), (port(n),), (DB, DEFAULT))  # fmt: skip

    found = [on_host(n) for n in range(1, 41)]
    reply = host_instances_to_proto(found)
    assert len(reply.address_sets) == 2
    # the members are not repeated per port (10.9.0.10 is a member no port here has)
    assert reply.SerializeToString().count(b"10.9.0.10") == 1
    assert host_instances_from_proto(reply) == found


def test_a_rule_naming_a_set_the_message_lacks_gets_none() -> None:
    """The host then declares the set empty (ruleset.py): it matches nothing."""
    request = build_request([build(1)])
    del request.address_sets[:]
    (back,) = builds_from_proto(request)
    assert back.address_sets == () and back.ports[0].security_rules == RULES


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (network_pb2.AddressSet(group_id="g", addresses=["10.0.0.300"]), "address_sets.addresses"),
        (network_pb2.AddressSet(group_id="g", addresses=["10.0.0.0/24"]), "address_sets.addresses"),
        (network_pb2.AddressSet(addresses=["10.0.0.1"]), "address_sets.group_id"),
    ],
)
def test_a_bad_address_set_is_the_callers_error(
    message: network_pb2.AddressSet, field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        address_sets_from_proto([message])
    assert caught.value.field == field


def test_a_rule_with_both_a_cidr_and_a_group_is_refused() -> None:
    message = port_to_proto(port(1))
    message.rules[2].remote_cidr = "10.0.0.0/8"
    with pytest.raises(InvalidArgument):
        port_from_proto(message)


def test_an_older_compute_never_reads_a_rule_with_a_remote_as_any_address() -> None:
    """It knows only remote_cidrs (empty: any): a CIDR rule keeps its CIDR there, a
    remote-group rule gets 0.0.0.0/32 (no guest), never its members."""
    by_id = {r.rule_id: r for r in port_to_proto(port(1)).rules}
    assert list(by_id["web"].remote_cidrs) == ["192.0.2.0/24"]
    assert list(by_id["members"].remote_cidrs) == list(by_id["db"].remote_cidrs) == ["0.0.0.0/32"]
    assert list(by_id["any-out"].remote_cidrs) == []


def test_an_older_conductors_rule_is_read_or_refused_never_opened() -> None:
    message = port_to_proto(port(1))
    del message.rules[:]
    message.rules.add(rule_id="cidr", direction="ingress", protocol="any",
                      remote_cidrs=["10.0.0.0/8"])  # fmt: skip
    (rule,) = port_from_proto(message).security_rules
    assert (rule.remote_cidr, rule.remote_group_id) == (N("10.0.0.0/8"), None)
    # a group's members as /32s: no shape for them here, refused (not "any")
    message.rules[0].remote_cidrs.append("10.0.0.9/32")
    with pytest.raises(InvalidArgument, match="older release"):
        port_from_proto(message)
