"""novactl against the running system, as the README shows it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.functional.conftest import System

pytestmark = pytest.mark.timeout(90)


def novactl(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    binary = str(Path(sys.executable).with_name("novactl"))
    return subprocess.run(
        [binary, "--endpoint", f"http://{system.api.address}", "--token", system.token, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_create_wait_list_show(system: System) -> None:
    api = system
    created = novactl(
        api, "server", "create", "--flavor", "m1.tiny", "--image", "nova-tiny",
        "--name", "cli", "--count", "2", "--wait",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert created.stdout.count("ACTIVE") == 2
    assert "ACTIVE=2" in created.stderr  # the progress line
    listed = novactl(api, "-o", "json", "server", "list")
    rows = json.loads(listed.stdout)
    cli_rows = [r for r in rows if r["name"].startswith("cli-")]
    assert len(cli_rows) == 2
    shown = novactl(api, "server", "show", cli_rows[0]["id"])
    assert shown.returncode == 0 and "RUNNING" in shown.stdout
    deleted = novactl(api, "server", "delete", "--wait", *(r["id"] for r in cli_rows))
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.count("DELETED") == 2
    after = json.loads(novactl(api, "-o", "json", "server", "list").stdout)
    assert not [r for r in after if r["name"].startswith("cli-")]


def test_cli_reports_errors_with_the_status_code(system: System) -> None:
    api = system
    result = novactl(
        api, "server", "create", "--flavor", "m1.nope", "--image", "nova-tiny", "--name", "x"
    )
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr and "flavor_ref" in result.stderr
