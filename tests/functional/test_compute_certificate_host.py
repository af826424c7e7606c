"""The compute process given another host's certificate exits at once, with a message that
names both hosts: what an operator sees in `kubectl logs` after a misdeployment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.pki import create_pki, role_settings_env

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]


def test_compute_exits_naming_both_hosts(tmp_path: Path) -> None:
    pki = create_pki(tmp_path / "pki", compute_hosts=["node-a", "node-b"])
    env = {**os.environ, **role_settings_env(pki, "compute", host="node-b")}
    result = subprocess.run(
        [sys.executable, "-m", "services.compute", "--listen", "127.0.0.1:0",
         "--host", "node-a", "--instances-path", str(tmp_path / "instances")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=45, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    output = result.stdout + result.stderr
    assert "nova-grpc-compute cannot start" in output
    assert (
        "names urn:nova-grpc:compute:node-b, but this service is urn:nova-grpc:compute:node-a"
    ) in output
