"""Compute's network driver: the host side of ports (bridges, taps, filtering, DHCP)."""
