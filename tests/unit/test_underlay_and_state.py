"""The underlay address a compute registers, and the host network state on the wire."""

from __future__ import annotations

from ipaddress import IPv4Address as A
from ipaddress import IPv4Interface, IPv4Network

import pytest

from services.common.errors import InvalidArgument
from services.common.generated.novagrpc.internal.v1 import datapath_pb2
from services.common.overlay import FloatingBinding, HostNetworkState, Uplink
from services.common.rpc.datapath import state_from_proto, state_to_proto
from services.compute.net.underlay import choose_underlay

pytestmark = pytest.mark.timeout(10)


def test_the_setting_wins_then_a_routable_advertised_address() -> None:
    assert choose_underlay("192.0.2.7", advertised="198.51.100.1:8790", conductors=[]) == A(
        "192.0.2.7"
    )
    assert choose_underlay("", advertised="198.51.100.1:8790", conductors=[]) == A("198.51.100.1")


def test_loopback_and_wildcard_give_no_overlay() -> None:
    # advertised on loopback, the conductor too: the route's source is loopback as well
    assert choose_underlay("", advertised="127.0.0.1:8790", conductors=["127.0.0.1:8780"]) is None
    assert choose_underlay("", advertised="0.0.0.0:8790", conductors=[]) is None
    assert choose_underlay("", advertised="compute-1:8790", conductors=[]) is None


def test_unix_sockets_say_nothing_about_the_network() -> None:
    # no name lookup of "unix" either: the only conductor is a socket file
    assert choose_underlay("", advertised="unix:/run/c.sock", conductors=["unix:/run/k"]) is None
    assert choose_underlay("192.0.2.7", advertised="unix:/run/c.sock", conductors=[]) == A(
        "192.0.2.7"
    )


def test_the_state_survives_the_wire() -> None:
    state = HostNetworkState(
        host="h",
        overlay={5: frozenset({A("192.0.2.2"), A("192.0.2.3")}), 6: frozenset()},
        uplinks=(
            Uplink(5, "br-ex", IPv4Interface("203.0.113.5/24"), None, IPv4Network("10.5.0.0/24")),
        ),
        floating=(FloatingBinding(5, A("203.0.113.50"), A("10.5.0.9"), "p"),),
    )
    assert state_from_proto(state_to_proto(state)) == state
    broken = datapath_pb2.HostNetworkState(
        host="h", overlay=[datapath_pb2.OverlayNetwork(segmentation_id=1, peers=["nope"])]
    )
    with pytest.raises(InvalidArgument) as caught:
        state_from_proto(broken)
    assert caught.value.field == "state"
