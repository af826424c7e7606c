"""novactl network ... and server create --nic, against real processes: a user makes a
network, creates servers on it with a chosen and a chosen-for-them address, sees the
addresses, and gets clear refusals."""

from __future__ import annotations

import pytest

from tests.functional.conftest import System
from tests.functional.test_cli_coverage import as_json, ctl

pytestmark = pytest.mark.timeout(120)


def test_networks_nics_and_addresses_through_novactl(system: System) -> None:
    made = as_json(ctl(system, "-o", "json", "network", "create", "cli-net",
                       "--subnet-range", "10.77.0.0/24", "--dns-nameserver", "10.77.0.53",
                       "--allocation-pool", "10.77.0.10-10.77.0.20"))  # fmt: skip
    assert made["gateway_ip"] == "10.77.0.1" and made["pool_size"] == 11  # type: ignore[index]
    assert "cli-net" in ctl(system, "network", "list").stdout
    overlap = ctl(system, "network", "create", "x", "--subnet-range", "10.77.0.128/25")
    assert overlap.returncode == 1 and "INVALID_ARGUMENT" in overlap.stderr
    assert "cidr" in overlap.stderr

    created = as_json(ctl(system, "-o", "json", "server", "create", "--flavor", "m1.tiny",
                          "--image", "nova-tiny", "--name", "cli-nic",
                          "--nic", "net=cli-net,ip=10.77.0.15", "--nic", "net=cli-net",
                          "--wait"))  # fmt: skip
    (server,) = created["servers"]  # type: ignore[index]
    assert server["status"] == "ACTIVE"
    assert [(a["network"], a["addr"]) for a in server["addresses"]] == [
        ("cli-net", "10.77.0.15"), ("cli-net", "10.77.0.10")
    ]  # fmt: skip
    table = ctl(system, "server", "list").stdout
    assert "cli-net=10.77.0.15; cli-net=10.77.0.10" in table
    taken = ctl(system, "server", "create", "--flavor", "m1.tiny", "--image", "nova-tiny",
                "--name", "again", "--nic", "net=cli-net,ip=10.77.0.15")  # fmt: skip
    assert taken.returncode == 1 and "ALREADY_EXISTS" in taken.stderr
    assert "nics.fixed_ip" in taken.stderr
    in_use = ctl(system, "network", "delete", "cli-net")
    assert in_use.returncode == 1 and "FAILED_PRECONDITION" in in_use.stderr
    assert ctl(system, "server", "delete", "--wait", server["id"]).returncode == 0
    shown = as_json(ctl(system, "-o", "json", "network", "show", "cli-net"))
    assert shown.get("ports_in_use", 0) == 0  # type: ignore[union-attr]
    assert ctl(system, "network", "delete", "cli-net").returncode == 0
    missing = ctl(system, "network", "show", "cli-net")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
