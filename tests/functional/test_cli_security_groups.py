"""novactl security-group ... and server add/remove security group, against real processes:
a user sees the project's default group, makes a group with rules, gives it to a server at
create and on the running server, and gets clear refusals."""

from __future__ import annotations

import pytest

from tests.functional.conftest import System
from tests.functional.test_cli_coverage import as_json, ctl

pytestmark = pytest.mark.timeout(120)


def groups_of(system: System, server_id: str) -> list[str]:
    shown = as_json(ctl(system, "-o", "json", "server", "show", server_id))
    return list(shown.get("security_groups", []))  # type: ignore[union-attr]


def test_security_groups_through_novactl(system: System) -> None:
    listed = ctl(system, "security-group", "list")
    assert listed.returncode == 0 and "default" in listed.stdout  # made on first use
    made = as_json(ctl(system, "-o", "json", "security-group", "create", "cli-web",
                       "--description", "web servers"))  # fmt: skip
    assert (made["name"], made["description"]) == ("cli-web", "web servers")  # type: ignore[index]
    rule = as_json(ctl(system, "-o", "json", "security-group", "rule", "create", "cli-web",
                       "--ingress", "--protocol", "tcp", "--dst-port", "80:90",
                       "--remote-ip", "10.0.0.0/8"))  # fmt: skip
    assert (rule["port_range_min"], rule["port_range_max"], rule["remote_ip_prefix"]) == (  # type: ignore[index]
        80, 90, "10.0.0.0/8"
    )  # fmt: skip
    from_default = as_json(ctl(system, "-o", "json", "security-group", "rule", "create",
                               "cli-web", "--protocol", "icmp",
                               "--remote-group", "default"))  # fmt: skip
    rules = ctl(system, "security-group", "rule", "list", "cli-web").stdout
    assert "80:90" in rules and "10.0.0.0/8" in rules and "icmp" in rules
    bad_port = ctl(system, "security-group", "rule", "create", "cli-web", "--protocol", "icmp",
                   "--dst-port", "8")  # fmt: skip
    assert bad_port.returncode == 1 and "INVALID_ARGUMENT" in bad_port.stderr
    assert "port_range_min" in bad_port.stderr
    unknown = ctl(system, "security-group", "rule", "create", "cli-web", "--remote-group", "x")
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
    assert "remote_group_id" in unknown.stderr

    created = as_json(ctl(system, "-o", "json", "server", "create", "--flavor", "m1.tiny",
                          "--image", "nova-tiny", "--name", "cli-sg",
                          "--security-group", "cli-web", "--wait"))  # fmt: skip
    (server,) = created["servers"]  # type: ignore[index]
    assert list(server["security_groups"]) == ["cli-web"]
    in_use = ctl(system, "security-group", "delete", "cli-web")
    assert in_use.returncode == 1 and "FAILED_PRECONDITION" in in_use.stderr
    default = ctl(system, "security-group", "delete", "default")
    assert default.returncode == 1 and "FAILED_PRECONDITION" in default.stderr

    added = ctl(system, "server", "add", "security", "group", server["id"], "default")
    assert added.returncode == 0, added.stderr
    assert groups_of(system, server["id"]) == ["cli-web", "default"]
    again = ctl(system, "server", "add", "security", "group", server["id"], "default")
    assert again.returncode == 1 and "ALREADY_EXISTS" in again.stderr
    removed = ctl(system, "server", "remove", "security", "group", server["id"], "cli-web")
    assert removed.returncode == 0, removed.stderr
    assert groups_of(system, server["id"]) == ["default"]

    assert ctl(system, "security-group", "rule", "delete",
               from_default["id"]).returncode == 0  # type: ignore[index]  # fmt: skip
    shown = as_json(ctl(system, "-o", "json", "security-group", "show", "cli-web"))
    assert [r["id"] for r in shown["rules"]] == [rule["id"]]  # type: ignore[index]
    assert ctl(system, "security-group", "delete", "cli-web").returncode == 0
    missing = ctl(system, "security-group", "show", "cli-web")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    assert ctl(system, "server", "delete", "--wait", server["id"]).returncode == 0
