"""Start the services as real processes (``python -m services.X``) and stop them cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from services.common.pki import create_pki, role_settings_env
from services.common.tls import INTERNAL_NAME
from tests.support.polling import wait_until
from tests.support.tls import api_channel, api_identity

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    address: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class ServiceSet:
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)

    @property
    def pki(self) -> Path:
        """The throwaway CA and certificates every service here uses for mutual TLS."""
        directory = self.workdir / "pki"
        if not (directory / "ca.pem").exists():
            create_pki(directory)
        return directory

    def start(
        self, name: str, module: str, args: Sequence[str], timeout: float = 30, *,
        role: str | None = None, wrapper: Sequence[str] = (),
    ) -> Service:  # fmt: skip
        """``wrapper``: a command that execs the service (``nsenter --net=...``: a compute
        whose datapath lives in a namespace); it must exec, so that signals reach the
        service itself."""
        ready = self.workdir / f"{name}.addr"
        ready.unlink(missing_ok=True)
        log_path = self.workdir / f"{name}.log"
        log_file = log_path.open("wb")
        role = role or module.rsplit(".", 1)[-1]
        # a compute presents the certificate of the host it runs as (the conductor checks it)
        host = args[list(args).index("--host") + 1] if "--host" in args else ""
        env = {**os.environ, **self.env, **role_settings_env(self.pki, role, host=host)}
        process = subprocess.Popen(
            [*wrapper, sys.executable, "-m", module, *args, "--ready-file", str(ready)],
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )

        def serving() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}):\n{log_path.read_text()}")
            return ready.exists()

        try:
            wait_until(serving, timeout, f"{name}'s ready file", interval=0.02)
        except TimeoutError:
            process.kill()
            raise RuntimeError(f"{name} not ready in {timeout}s:\n{log_path.read_text()}") from None
        service = Service(name, process, ready.read_text().strip(), log_path)
        self.services.append(service)
        return service

    def service_named(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def channel(self, service: Service) -> grpc.Channel:
        """A client channel to ``service``: mutual TLS (as the api) for the internal ones."""
        if service.name.startswith("api"):
            return grpc.insecure_channel(service.address)
        return api_channel(service.address, self.pki)

    def grpcurl_tls_args(self, service: Service) -> list[str]:
        if service.name.startswith("api"):
            return ["-plaintext"]
        ca, cert, key = api_identity(self.pki)
        return [
            "-cacert", str(ca), "-cert", str(cert), "-key", str(key), "-servername", INTERNAL_NAME,
        ]  # fmt: skip

    def stop(self, timeout: float = 20) -> dict[str, int]:
        """SIGTERM everything (newest first); returns each exit status."""
        codes = {}
        for service in reversed(self.services):
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        for service in reversed(self.services):
            try:
                codes[service.name] = service.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                service.process.kill()
                codes[service.name] = service.process.wait()
        self.services.clear()
        return codes

    def socket(self, name: str) -> str:
        """A unix-domain socket address in the work directory."""
        return f"unix:{self.workdir / name}.sock"

    def _compute_args(
        self, i: int, conductor: Service, extra: Sequence[str], *, unix: bool = False
    ) -> list[str]:
        return [
            *("--listen", self.socket(f"compute{i}") if unix else "127.0.0.1:0"),
            *("--conductor-addresses", conductor.address),
            *("--host", f"compute{i}"),
            *("--instances-path", str(self.workdir / f"instances{i}")),
            *extra,
        ]

    def start_all_in_one(
        self, database_url: str, *, computes: int = 1, compute_args: Sequence[str] = (),
        unix: bool = False,
    ) -> tuple[Service, Service, list[Service]]:  # fmt: skip
        """Conductor, ``computes`` compute services (test:///default) and the api (with
        unlimited quotas unless the environment sets them); ``unix``: the conductor and the
        computes listen on unix-domain sockets in the work directory."""
        self.env["NOVA_GRPC_DATABASE_URL"] = database_url
        for name in ("INSTANCES", "CORES", "RAM"):
            self.env.setdefault(f"NOVA_GRPC_QUOTA_{name}", "-1")
        conductor = self.start(
            "conductor",
            "services.conductor",
            ["--listen", self.socket("conductor") if unix else "127.0.0.1:0"],
        )
        compute_services = [
            self.start(
                f"compute{i}",
                "services.compute",
                self._compute_args(i, conductor, compute_args, unix=unix),
            )
            for i in range(1, computes + 1)
        ]
        api = self.start(
            "api",
            "services.api",
            ["--listen", "127.0.0.1:0", "--conductor-addresses", conductor.address],
        )
        return api, conductor, compute_services
