"""novactl covers every public RPC; endpoint and token from flags, environment or file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.functional.conftest import System
from tests.support.keys import ed25519_public_key

pytestmark = pytest.mark.timeout(120)
NOVACTL = str(Path(sys.executable).with_name("novactl"))


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NOVACTL, *args], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def ctl(system: System, *args: str, admin: bool = False) -> subprocess.CompletedProcess[str]:
    token = system.admin_token if admin else system.token
    return run("--endpoint", f"http://{system.api.address}", "--token", token, *args)


def as_json(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_credentials_from_the_environment_and_a_config_file(system: System, tmp_path: Path) -> None:
    env = {"NOVACTL_ENDPOINT": f"http://{system.api.address}", "NOVACTL_TOKEN": system.token,
           "NOVACTL_CONFIG": str(tmp_path / "absent.toml")}  # fmt: skip
    assert run("flavor", "list", env=env).returncode == 0
    config = tmp_path / "config.toml"
    config.write_text(f'endpoint = "http://{system.api.address}"\ntoken = "{system.token}"\n')
    bare = {"NOVACTL_CONFIG": str(config), "NOVACTL_ENDPOINT": "", "NOVACTL_TOKEN": ""}
    listed = run("-o", "json", "flavor", "list", env=bare)
    assert {"m1.tiny", "m1.small"} <= {f["name"] for f in as_json(listed)}  # type: ignore[union-attr]
    config.write_text('endpoint = "x"\nbogus = 1\n')
    broken = run("flavor", "list", env=bare)
    assert broken.returncode == 2 and "bogus" in broken.stderr


def test_catalogue_and_account_commands(system: System, tmp_path: Path) -> None:
    assert "m1.tiny" in ctl(system, "flavor", "list").stdout
    made = as_json(ctl(system, "-o", "json", "flavor", "create", "--name", "cli.flavor",
                       "--vcpus", "1", "--ram", "128", admin=True))  # fmt: skip
    assert made["name"] == "cli.flavor"  # type: ignore[index]
    refused = ctl(system, "flavor", "create", "--name", "x", "--vcpus", "1", "--ram", "1")
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr
    assert ctl(system, "flavor", "delete", made["id"], admin=True).returncode == 0  # type: ignore[index]
    assert "nova-tiny" in ctl(system, "image", "list").stdout
    assert "nova-tiny" in ctl(system, "image", "show", "nova-tiny").stdout

    key = tmp_path / "id.pub"
    key.write_text(ed25519_public_key())
    imported = as_json(ctl(system, "-o", "json", "keypair", "import", "--name", "cli-key",
                           "--public-key-file", str(key)))  # fmt: skip
    assert imported["fingerprint"].startswith("SHA256:")  # type: ignore[index]
    assert "cli-key" in ctl(system, "keypair", "list").stdout
    group = as_json(ctl(system, "-o", "json", "group", "create", "--name", "cli-group",
                        "--policy", "anti-affinity"))  # fmt: skip
    assert "cli-group" in ctl(system, "group", "list").stdout
    quota = as_json(ctl(system, "-o", "json", "quota", "show"))
    assert quota["project_id"] == "demo"  # type: ignore[index]
    services = as_json(ctl(system, "-o", "json", "compute-service", "list", admin=True))
    assert services[0]["state"] == "up"  # type: ignore[index]
    assert ctl(system, "group", "delete", group["id"]).returncode == 0  # type: ignore[index]
    assert ctl(system, "keypair", "delete", "cli-key").returncode == 0


def test_server_power_actions_and_history(system: System) -> None:
    created = as_json(ctl(system, "-o", "json", "server", "create", "--flavor", "m1.tiny",
                          "--image", "nova-tiny", "--name", "cli-power", "--tag", "cli",
                          "--wait"))  # fmt: skip
    (server,) = created["servers"]  # type: ignore[index]
    assert server["status"] == "ACTIVE" and created["admin_password"]  # type: ignore[index]
    stopped = ctl(system, "server", "stop", server["id"], "--wait")
    assert stopped.returncode == 0 and "SHUTOFF" in stopped.stdout, stopped.stderr
    started = ctl(system, "server", "start", server["id"], "--wait")
    assert "ACTIVE" in started.stdout, started.stderr
    rebooted = ctl(system, "server", "reboot", "--hard", server["id"], "--wait")
    assert "ACTIVE" in rebooted.stdout, rebooted.stderr
    history = ctl(system, "server", "actions", server["id"])
    for action in ("create", "stop", "start", "reboot"):
        assert action in history.stdout
    tagged = as_json(ctl(system, "-o", "json", "server", "list", "--tag", "cli"))
    assert [s["id"] for s in tagged] == [server["id"]]  # type: ignore[index,union-attr]
    wrong = ctl(system, "server", "start", server["id"])
    assert wrong.returncode == 1 and "FAILED_PRECONDITION" in wrong.stderr
    assert ctl(system, "server", "delete", "--wait", server["id"]).returncode == 0
