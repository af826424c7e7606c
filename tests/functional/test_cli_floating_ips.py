"""novactl external network ... and floating ip ... against real processes (libvirt's test
hypervisor: no datapath): an admin defines an external network, a user connects a network,
allocates an address, associates it with a server, sees it in the server's addresses, and
gets clear refusals; the server's delete leaves the address the project's, unassociated."""

from __future__ import annotations

import pytest

from tests.functional.conftest import System
from tests.functional.test_cli_coverage import as_json, ctl

pytestmark = pytest.mark.timeout(120)


def test_floating_addresses_through_novactl(system: System) -> None:
    made = as_json(ctl(system, "-o", "json", "external", "network", "create", "cli-ext",
                       "--subnet-range", "203.0.113.0/24", "--bridge", "br-ex",
                       "--allocation-pool", "203.0.113.10-203.0.113.20", admin=True))  # fmt: skip
    assert made["pool_size"] == 11  # type: ignore[index]
    no_pool = ctl(system, "external", "network", "create", "x", "--subnet-range",
                  "198.51.100.0/24", "--bridge", "br-ex", admin=True)  # fmt: skip
    assert no_pool.returncode == 1 and "INVALID_ARGUMENT" in no_pool.stderr
    assert "allocation_pools" in no_pool.stderr
    as_json(ctl(system, "-o", "json", "network", "create", "cli-fip-net",
                "--subnet-range", "10.78.0.0/24"))  # fmt: skip
    connected = ctl(system, "external", "network", "connect", "cli-fip-net", "cli-ext")
    assert connected.returncode == 0, connected.stderr

    created = as_json(ctl(system, "-o", "json", "server", "create", "--flavor", "m1.tiny",
                          "--image", "nova-tiny", "--name", "cli-fip",
                          "--nic", "net=cli-fip-net", "--wait"))  # fmt: skip
    (server,) = created["servers"]  # type: ignore[index]
    fip = as_json(ctl(system, "-o", "json", "floating", "ip", "create", "cli-ext"))
    address = fip["floating_ip_address"]  # type: ignore[index]
    assert address == "203.0.113.10"
    bound = as_json(ctl(system, "-o", "json", "floating", "ip", "set", address,
                        "--server", "cli-fip"))  # fmt: skip
    assert bound["server_id"] == server["id"]  # type: ignore[index]
    shown = as_json(ctl(system, "-o", "json", "server", "show", server["id"]))
    assert [(a["addr"], a["type"]) for a in shown["addresses"]] == [  # type: ignore[index]
        ("10.78.0.2", "fixed"), (address, "floating")
    ]  # fmt: skip
    in_use = ctl(system, "floating", "ip", "delete", address)
    assert in_use.returncode == 1 and "FAILED_PRECONDITION" in in_use.stderr
    assert "id:" in in_use.stderr
    assert address in ctl(system, "floating", "ip", "list").stdout

    assert ctl(system, "server", "delete", "--wait", server["id"]).returncode == 0
    left = as_json(ctl(system, "-o", "json", "floating", "ip", "show", address))
    assert not left.get("server_id")  # type: ignore[union-attr]
    assert ctl(system, "floating", "ip", "delete", address).returncode == 0
    assert ctl(system, "external", "network", "disconnect", "cli-fip-net").returncode == 0
    assert ctl(system, "external", "network", "delete", "cli-ext", admin=True).returncode == 0
    assert "cli-ext" not in ctl(system, "external", "network", "list").stdout
