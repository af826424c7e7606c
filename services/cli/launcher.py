"""All-in-one launcher (``make run``): migrate, then start conductor, compute and api as three
processes on SQLite and libvirt's test:///default. Ctrl-C (or SIGTERM) stops all three."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from services.cli.manage import issue_token, token_is_valid
from services.common.db.migrate import upgrade
from services.common.pki import create_pki, role_settings_env

READY_TIMEOUT_S = 30.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nova-grpc-all-in-one",
        description="Run api, conductor and compute on one machine (SQLite, test:///default).",
    )
    parser.add_argument("--state-dir", default="var", help="database, logs, instance files")
    parser.add_argument("--database-url", default="", help="default: sqlite in --state-dir")
    parser.add_argument("--api-listen", default="127.0.0.1:8774")
    parser.add_argument("--conductor-listen", default="127.0.0.1:8780")
    parser.add_argument("--compute-listen", default="127.0.0.1:8790")
    parser.add_argument("--libvirt-uri", default="test:///default")
    parser.add_argument("--virt-type", default="test")
    parser.add_argument("--compute-host", default="compute-1")
    parser.add_argument("--metrics", default="127.0.0.1:9774,127.0.0.1:9780,127.0.0.1:9790",
                        help="api,conductor,compute metrics addresses (empty: none)")  # fmt: skip
    return parser


class Launcher:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self,
        name: str,
        module: str,
        args: Sequence[str],
        *,
        log: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        """Start ``python -m module``; wait for its ready file; return its bound address.
        Its output goes to ``log`` when given, else to this terminal."""
        ready = self.state_dir / "run" / f"{name}.addr"
        ready.unlink(missing_ok=True)
        command = [sys.executable, "-m", module, *args, "--ready-file", str(ready)]
        output = None if log is None else log.open("ab")
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            stdout=output,
            stderr=None if output is None else subprocess.STDOUT,
        )
        if output is not None:
            output.close()
        self.children.append((name, process))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with status {process.returncode} at start")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {READY_TIMEOUT_S:.0f}s")
            time.sleep(0.05)
        return ready.read_text().strip()

    def stop(self) -> None:
        for _, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, process in reversed(self.children):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in time; killing it", file=sys.stderr)
                process.kill()
                process.wait()

    def wait_for_exit(self) -> str:
        """Block until a child exits (its name) or a signal arrives ('signal')."""
        stop = {"flag": False}

        def on_signal(_signum: int, _frame: object) -> None:
            stop["flag"] = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stop["flag"]:
            for name, process in self.children:
                if process.poll() is not None:
                    return name
            time.sleep(0.2)
        return "signal"


def dev_token(database_url: str, state_dir: Path) -> Path:
    """The development token of project 'demo' (created once, kept in the state dir, 0600)."""
    path = state_dir / "dev-token"
    if path.exists() and token_is_valid(database_url, path.read_text().strip()):
        return path
    _record, secret = issue_token(database_url, "demo", description="make run development token")
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return path


def dev_pki(state_dir: Path) -> Path:
    """A throwaway CA and certificates for the internal mutual TLS (made once; again for a
    state directory from before the CA kept its key, which issuing per host needs)."""
    directory = state_dir / "pki"
    if not (directory / "ca-key.pem").exists():
        create_pki(directory)
    return directory


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    state_dir = Path(args.state_dir).resolve()
    (state_dir / "run").mkdir(parents=True, exist_ok=True)
    database_url = args.database_url or f"sqlite:///{state_dir / 'nova.sqlite'}"
    upgrade(database_url)
    os.environ["NOVA_GRPC_DATABASE_URL"] = database_url
    token_file = dev_token(database_url, state_dir)
    pki = dev_pki(state_dir)
    launcher = Launcher(state_dir)
    metrics = dict(zip(("api", "conductor", "compute"), args.metrics.split(","), strict=False))

    def metrics_args(role: str) -> list[str]:
        return ["--metrics-listen", metrics[role]] if metrics.get(role) else []

    try:
        conductor = launcher.start(
            "conductor", "services.conductor",
            ["--listen", args.conductor_listen, *metrics_args("conductor")],
            env=role_settings_env(pki, "conductor"),
        )  # fmt: skip
        launcher.start(
            "compute",
            "services.compute",
            [
                "--listen",
                args.compute_listen,
                "--conductor-addresses",
                conductor,
                "--libvirt-uri",
                args.libvirt_uri,
                "--virt-type",
                args.virt_type,
                "--host",
                args.compute_host,
                "--instances-path",
                str(state_dir / "instances"),
                *metrics_args("compute"),
            ],
            env=role_settings_env(pki, "compute", host=args.compute_host),
        )
        api = launcher.start(
            "api",
            "services.api",
            ["--listen", args.api_listen, "--conductor-addresses", conductor, *metrics_args("api")],
            env=role_settings_env(pki, "api"),
        )
    except RuntimeError as exc:
        print(f"nova-grpc: {exc}", file=sys.stderr)
        launcher.stop()
        return 1
    novactl = Path(sys.executable).with_name("novactl")
    print(
        f"\nnova-grpc is running: api on {api}, conductor on {conductor}, "
        f"database {database_url}\n"
        f"A development token for project 'demo' is in {token_file}. Try:\n"
        f"  export NOVACTL_TOKEN=$(cat {token_file})\n"
        f"  {novactl} --endpoint http://{api} server create --flavor m1.tiny "
        f"--image nova-tiny --name web --wait\n"
        f"  {novactl} --endpoint http://{api} server list\n"
        f'  grpcurl -plaintext -H "authorization: Bearer $NOVACTL_TOKEN" {api} list\n'
        f"Metrics: {', '.join(f'http://{a}/metrics' for a in metrics.values() if a) or 'off'}\n"
        f"Ctrl-C stops all three services.\n",
        flush=True,
    )
    reason = launcher.wait_for_exit()
    if reason != "signal":
        print(f"nova-grpc: {reason} exited; stopping the others", file=sys.stderr)
    launcher.stop()
    return 0 if reason == "signal" else 1


if __name__ == "__main__":
    sys.exit(main())
