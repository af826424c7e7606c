"""novactl server console-log / console against the three real processes (test:///default:
no guest, so the console is refused with a reason)."""

from __future__ import annotations

import json

import pytest

from tests.functional.conftest import System
from tests.functional.test_cli import novactl

pytestmark = pytest.mark.timeout(90)


def test_console_log_on_the_test_hypervisor_says_why_not(system: System) -> None:
    created = novactl(
        system, "-o", "json", "server", "create", "--flavor", "m1.tiny", "--image", "nova-tiny",
        "--name", "con", "--wait",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    server_id = json.loads(created.stdout)["servers"][0]["id"]
    for extra in ([], ["--lines", "5"], ["--follow", "--follow-timeout", "5"]):
        result = novactl(system, "server", "console-log", server_id, *extra)
        assert result.returncode == 1, result.stdout
        assert "FAILED_PRECONDITION" in result.stderr and "test hypervisor" in result.stderr
    attached = novactl(system, "server", "console", server_id)
    assert attached.returncode == 1
    assert "FAILED_PRECONDITION" in attached.stderr and "test hypervisor" in attached.stderr
    bad = novactl(system, "server", "console-log", server_id, "--lines", "20000")
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr and "lines" in bad.stderr
    assert novactl(system, "server", "delete", "--wait", server_id).returncode == 0


def test_wait_ready_never_pretends_on_the_test_hypervisor(system: System) -> None:
    """The test hypervisor has no guest, so no guest ever says it is ready: --wait-ready
    times out (ACTIVE is not enough)."""
    result = novactl(
        system, "server", "create", "--flavor", "m1.tiny", "--image", "nova-tiny",
        "--name", "ready", "--wait-ready", "--wait-timeout", "3",
    )  # fmt: skip
    assert result.returncode == 2, result.stdout
    assert "timed out" in result.stderr and "ready" in result.stderr
