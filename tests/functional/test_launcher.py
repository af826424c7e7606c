"""The all-in-one launcher behind `make run`: three processes, a first create, Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.polling import wait_until

pytestmark = pytest.mark.timeout(120)


def test_launcher_runs_the_system_and_ctrl_c_stops_all_three(tmp_path: Path) -> None:
    launcher = subprocess.Popen(
        [
            sys.executable, "-m", "services.cli.launcher", "--state-dir", str(tmp_path),
            "--api-listen", "127.0.0.1:0", "--conductor-listen", "127.0.0.1:0",
            "--compute-listen", "127.0.0.1:0", "--metrics", "",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        api_file = tmp_path / "run" / "api.addr"

        def serving() -> bool:
            assert launcher.poll() is None, launcher.stdout.read() if launcher.stdout else ""
            return api_file.exists()

        wait_until(serving, 60, "the launcher's api address file")
        api = api_file.read_text().strip()
        novactl = str(Path(sys.executable).with_name("novactl"))
        token = (tmp_path / "dev-token").read_text().strip()
        created = subprocess.run(
            [novactl, "--endpoint", f"http://{api}", "--token", token, "server", "create",
             "--flavor", "m1.tiny", "--image", "nova-tiny", "--name", "web", "--wait"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        assert "ACTIVE" in created.stdout
    finally:
        launcher.send_signal(signal.SIGINT)
        output, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 0, output
    assert "nova-grpc is running" in output and "export NOVACTL_TOKEN" in output
    assert oct((tmp_path / "dev-token").stat().st_mode & 0o777) == "0o600"
    for service in ("api stopped", "conductor stopped", "compute compute-1 stopped"):
        assert service in output, output
