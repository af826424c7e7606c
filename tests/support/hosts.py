"""Simulated hypervisor hosts for libvirt's test driver (``test:///path/to/node.xml``)."""

from __future__ import annotations

# 64 CPUs, 256 GiB: room for hundreds of m1.tiny per simulated host (test:///default itself
# is a 16-CPU, 3 GiB node: nine m1.tiny).
NODE_XML = (
    "<node><cpu><mhz>3000</mhz><model>x86_64</model><active>64</active><nodes>1</nodes>"
    "<sockets>2</sockets><cores>16</cores><threads>2</threads></cpu>"
    "<memory>268435456</memory></node>"
)
