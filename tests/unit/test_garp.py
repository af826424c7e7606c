"""The gratuitous ARP frame, byte for byte (RFC 5227's announcement layout: an ARP request
whose sender and target protocol addresses are both the announced address)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from services.compute.net.garp import announcement

pytestmark = pytest.mark.timeout(10)

MAC = bytes.fromhex("fa163e000201")


def test_the_frame_announces_the_address_from_the_mac_to_everyone() -> None:
    frame = announcement(MAC, IPv4Address("203.0.113.50"))
    fields = [
        "ffffffffffff", "fa163e000201", "0806",  # broadcast, from the MAC, ARP
        "0001", "0800", "06", "04", "0001",  # Ethernet / IPv4, a request
        "fa163e000201", "cb007132",  # sender: the MAC at 203.0.113.50
        "000000000000", "cb007132",  # target: unknown MAC, the same address
    ]  # fmt: skip
    assert frame.hex() == "".join(fields)
    assert len(frame) == 42


def test_a_mac_of_another_length_is_refused() -> None:
    with pytest.raises(ValueError, match="6 bytes"):
        announcement(MAC[:5], IPv4Address("203.0.113.50"))
