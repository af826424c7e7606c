"""novactl as openstackclient and kubectl users try it: options anywhere, every output format,
names for ids, profiles, completion, plain progress off a terminal, a watch that runs on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.functional.conftest import System
from tests.functional.test_cli_coverage import NOVACTL, as_json, ctl, run
from tests.support.keys import ed25519_public_key

pytestmark = pytest.mark.timeout(120)


def test_global_options_anywhere_and_every_output_format(system: System) -> None:
    before = as_json(ctl(system, "-o", "json", "flavor", "list"))
    after = as_json(ctl(system, "flavor", "list", "-o", "json"))
    assert before == after
    assert yaml.safe_load(ctl(system, "flavor", "list", "-o", "yaml").stdout) == before
    table = ctl(system, "flavor", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "VCPUS", "RAM", "DISK"]
    wide = ctl(system, "flavor", "list", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["ID", "NAME", "VCPUS", "RAM", "DISK", "IS_PUBLIC"]
    names = ctl(system, "flavor", "list", "-o", "value", "-c", "name", "--sort", "name").stdout
    assert names.split() == sorted(f["name"] for f in before)  # type: ignore[index,union-attr]
    by_ram = ctl(system, "flavor", "list", "-f", "value", "-c", "ram", "-c", "name",
                 "--sort", "ram:desc").stdout.splitlines()  # fmt: skip
    rams = [int(line.split()[0]) for line in by_ram]
    assert rams == sorted(rams, reverse=True) and len(rams) == len(before)  # type: ignore[arg-type]
    assert ctl(system, "flavor", "show", "m1.tiny", "-o", "value", "-c", "vcpus").stdout == "1\n"
    unknown = ctl(system, "flavor", "list", "-c", "colour")
    assert unknown.returncode == 2 and "'colour'" in unknown.stderr


def test_names_resolve_and_an_ambiguous_name_lists_the_candidates(system: System) -> None:
    ids = []
    for _ in range(2):
        made = as_json(ctl(system, "server", "create", "twin", "--flavor", "m1.tiny",
                           "--image", "nova-tiny", "-o", "json"))  # fmt: skip
        ids.extend(made["server_ids"])  # type: ignore[index]
    ambiguous = ctl(system, "server", "show", "twin")
    assert ambiguous.returncode == 1
    assert "ambiguous" in ambiguous.stderr and all(i in ambiguous.stderr for i in ids)
    by_image = ctl(system, "server", "list", "--image", "nova-tiny", "--name", "^twin$",
                   "-o", "value", "-c", "id")  # fmt: skip
    assert sorted(by_image.stdout.split()) == sorted(ids)  # the image by its name
    missing = ctl(system, "server", "show", "no-such-server")
    assert missing.returncode == 1 and "no server with the id or name" in missing.stderr
    # every server, whatever its state, has the same keys in JSON: every field, always
    rows = as_json(ctl(system, "server", "list", "-o", "json"))
    assert len({frozenset(r) for r in rows}) == 1  # type: ignore[union-attr]
    assert {"fault", "task_state", "launched_at", "host"} <= set(rows[0])  # type: ignore[index]
    assert ctl(system, "server", "delete", "--wait", *ids).returncode == 0

    group = as_json(ctl(system, "server", "group", "create", "--policy", "anti-affinity",
                        "spread", "-o", "json"))  # fmt: skip
    by_name = as_json(ctl(system, "server", "group", "show", "spread", "-o", "json"))
    assert by_name["id"] == group["id"]  # type: ignore[index]
    made = as_json(ctl(system, "server", "create", "grouped", "--flavor", "m1.tiny",
                       "--image", "nova-tiny", "--hint", "group=spread", "--property",
                       "role=db", "--wait", "-o", "json"))  # fmt: skip
    (server,) = made["servers"]  # type: ignore[index]
    assert server["metadata"] == {"role": "db"}
    shown = as_json(ctl(system, "server", "show", "grouped", "-o", "json"))
    assert shown["id"] == server["id"]  # type: ignore[index]
    assert as_json(ctl(system, "group", "show", group["id"], "-o", "json"))["members"] == [  # type: ignore[index]
        server["id"]
    ]
    assert "create" in ctl(system, "server", "event", "list", "grouped").stdout
    assert ctl(system, "server", "delete", "grouped", "--wait").returncode == 0
    assert ctl(system, "server", "group", "delete", "spread").returncode == 0
    image = as_json(ctl(system, "image", "show", "nova-tiny", "-o", "json"))
    assert image["name"] == "nova-tiny"  # type: ignore[index]


def test_keypair_create_with_openstackclient_options(system: System, tmp_path: Path) -> None:
    key = tmp_path / "id.pub"
    key.write_text(ed25519_public_key())
    made = as_json(ctl(system, "keypair", "create", "--public-key", str(key), "osc-key",
                       "-o", "json"))  # fmt: skip
    assert made["name"] == "osc-key" and made["fingerprint"].startswith("SHA256:")  # type: ignore[index]
    assert ctl(system, "keypair", "delete", "osc-key").returncode == 0


def test_named_profiles_from_the_config_file(system: System, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'endpoint = "http://{system.api.address}"\ntoken = "wrong"\n\n'
        f'[profiles.good]\nendpoint = "http://{system.api.address}"\ntoken = "{system.token}"\n\n'
        f'[profiles.command]\nendpoint = "http://{system.api.address}"\n'
        f'token_command = "{sys.executable} -c \'print(\\"{system.admin_token}\\")\'"\n'
    )
    env = {"NOVACTL_CONFIG": str(config), "NOVACTL_ENDPOINT": "", "NOVACTL_TOKEN": "",
           "NOVACTL_PROFILE": ""}  # fmt: skip
    default = run("flavor", "list", env=env)
    assert default.returncode == 1 and "UNAUTHENTICATED" in default.stderr
    assert run("flavor", "list", "--profile", "good", env=env).returncode == 0
    assert run("flavor", "list", env={**env, "NOVACTL_PROFILE": "good"}).returncode == 0
    admin = run("-o", "json", "compute", "service", "list",
                env={**env, "NOVACTL_PROFILE": "command"})  # fmt: skip
    assert as_json(admin)[0]["state"] == "up"  # type: ignore[index]
    missing = run("flavor", "list", "--profile", "nope", env=env)
    assert missing.returncode == 2 and "profiles: command, good" in missing.stderr


def test_wait_progress_is_plain_lines_off_a_terminal(system: System) -> None:
    created = ctl(system, "server", "create", "plain", "--count", "2", "--flavor", "m1.tiny",
                  "--image", "nova-tiny", "--wait")  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "\r" not in created.stderr
    progress = [line for line in created.stderr.splitlines() if line.startswith("[")]
    assert progress and progress[-1].endswith("ACTIVE=2")
    assert len(progress) == len(set(progress))  # a line per change, not per event
    assert ctl(system, "server", "delete", "--wait", "plain-1", "plain-2").returncode == 0


def test_server_watch_runs_until_interrupted(system: System) -> None:
    watch = subprocess.Popen(
        [NOVACTL, "--endpoint", f"http://{system.api.address}", "--token", system.token,
         "server", "watch"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        made = as_json(ctl(system, "server", "create", "watched", "--flavor", "m1.tiny",
                           "--image", "nova-tiny", "-o", "json"))  # fmt: skip
        (server_id,) = made["server_ids"]  # type: ignore[index]
        assert watch.stdout is not None
        for line in watch.stdout:
            if server_id in line and " ACTIVE " in f" {line} ":
                break
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=20) == 130
        assert "Traceback" not in (watch.stderr.read() if watch.stderr else "")
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert ctl(system, "server", "delete", "--wait", "watched").returncode == 0


def test_version_and_completion() -> None:
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("novactl ")
    script = run("completion", "bash")
    assert script.returncode == 0
    subprocess.run(["bash", "-n"], input=script.stdout, text=True, check=True, timeout=20)


@pytest.mark.parametrize(
    ("line", "expected"),
    [("novactl server li", {"list"}), ("novactl server list --so", {"--sort", "--sort-by",
      "--sort-column"}), ("novactl server gr", {"group"})],
)  # fmt: skip
def test_the_shell_completes_commands_and_options(
    tmp_path: Path, line: str, expected: set[str]
) -> None:
    out = tmp_path / "completions"
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_STDOUT_FILENAME": str(out), "_ARGCOMPLETE_IFS": "\n"}  # fmt: skip
    subprocess.run([NOVACTL], env=env, check=True, timeout=20, capture_output=True)
    assert set(out.read_text().split()) == expected


def complete_line(tmp_path: Path, line: str) -> tuple[set[str], str]:
    out = tmp_path / "completions"
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_STDOUT_FILENAME": str(out), "_ARGCOMPLETE_IFS": "\n"}  # fmt: skip
    done = subprocess.run([NOVACTL], env=env, check=True, timeout=30, capture_output=True,
                          text=True)  # fmt: skip
    return set(out.read_text().split()), done.stderr


def test_the_shell_completes_resource_names_from_the_api(system: System, tmp_path: Path) -> None:
    made = as_json(ctl(system, "server", "create", "complete-me", "--flavor", "m1.tiny",
                       "--image", "nova-tiny", "-o", "json"))  # fmt: skip
    auth = f"novactl --endpoint http://{system.api.address} --token {system.token}"
    assert complete_line(tmp_path, f"{auth} server show complete-")[0] == {"complete-me"}
    assert complete_line(tmp_path, f"{auth} flavor show m1.t")[0] == {"m1.tiny"}
    # the options may also come after the command, as anywhere else
    after = f"novactl server create x --endpoint http://{system.api.address} --token {system.token}"
    assert complete_line(tmp_path, f"{after} --image nova-t")[0] == {"nova-tiny"}
    nothing, warning = complete_line(
        tmp_path, "novactl --endpoint 127.0.0.1:1 --timeout 1 server show co"
    )
    assert nothing == set() and "cannot list servers" in warning
    assert ctl(system, "server", "delete", "--wait", made["server_ids"][0]).returncode == 0  # type: ignore[index]
