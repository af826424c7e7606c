"""The overlay's pure parts: who floods to whom, and the iproute2 commands that make it so."""

from __future__ import annotations

from ipaddress import IPv4Address as A

import pytest

from services.common.overlay import PortPlacement, overlay_of
from services.compute.net import overlay

pytestmark = pytest.mark.timeout(10)


def test_each_host_floods_to_the_other_hosts_with_ports_on_the_network() -> None:
    found = overlay_of([
        PortPlacement("a", 5, A("192.0.2.1")), PortPlacement("a", 5, A("192.0.2.1")),
        PortPlacement("b", 5, A("192.0.2.2")), PortPlacement("c", 5, A("192.0.2.3")),
        PortPlacement("c", 6, A("192.0.2.3")),
        PortPlacement("d", 5, None),  # registered without an underlay address
    ])  # fmt: skip
    assert found["a"] == {5: frozenset({A("192.0.2.2"), A("192.0.2.3")})}
    assert found["c"] == {5: frozenset({A("192.0.2.1"), A("192.0.2.2")}), 6: frozenset()}
    # d can reach the others, but nobody can send to d
    assert found["d"][5] == frozenset({A("192.0.2.1"), A("192.0.2.2"), A("192.0.2.3")})
    assert overlay_of([]) == {}


def test_device_commands_name_the_vni_the_underlay_and_the_bridge() -> None:
    assert overlay.create_commands(42, local=A("192.0.2.1"), mtu=1450) == [
        ["ip", "link", "add", "nvx-42", "type", "vxlan", "id", "42", "local", "192.0.2.1",
         "dstport", "4789"],
        ["ip", "link", "set", "nvx-42", "master", "nbr-42", "mtu", "1450", "up"],
    ]  # fmt: skip


def test_flood_list_changes_only_what_differs() -> None:
    commands = overlay.flood_commands(
        7, wanted={A("192.0.2.2"), A("192.0.2.3")}, present={A("192.0.2.3"), A("192.0.2.9")}
    )
    assert commands == [
        ["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "nvx-7", "dst", "192.0.2.2"],
        ["bridge", "fdb", "del", "00:00:00:00:00:00", "dev", "nvx-7", "dst", "192.0.2.9"],
    ]
    assert overlay.flood_commands(7, wanted={A("192.0.2.3")}, present={A("192.0.2.3")}) == []


def test_what_the_kernel_shows_is_read_back() -> None:
    fdb = ('[{"mac":"00:00:00:00:00:00","dst":"10.9.9.8","flags":["self"]},'
           '{"mac":"fa:16:3e:00:00:01","dst":"10.9.9.7"},{"mac":"33:33:00:00:00:01"}]')  # fmt: skip
    assert overlay.parse_flood_list(fdb) == frozenset({A("10.9.9.8")})
    assert overlay.parse_flood_list("") == frozenset()
    link = '[{"ifname":"nvx-1","linkinfo":{"info_kind":"vxlan","info_data":{"local":"10.9.9.9"}}}]'
    assert overlay.parse_vxlan_local(link) == A("10.9.9.9")
    assert overlay.parse_vxlan_local("[]") is None
