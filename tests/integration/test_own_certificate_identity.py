"""A service refuses to start with a certificate that is not its own. Above all a compute with
one that names another host (issue 15, item 3):
on Kubernetes every node's pod must get its own certificate, and a node given another's
(a shared Secret, a copy to the wrong node) must fail loudly at start, not run with every
report refused. In-process here; the process's exit and its message in tests/functional.
The api and the conductor likewise refuse a certificate of another role."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.api.app import start_api
from services.api.settings import ApiSettings
from services.common.pki import create_pki, role_settings_env
from services.common.tls_reload import WrongIdentity
from services.compute.app import start_compute
from services.compute.settings import ComputeSettings
from services.conductor.app import start_conductor
from services.conductor.settings import ConductorSettings

pytestmark = pytest.mark.timeout(60)


def settings_for(pki: Path, *, host: str, certificate_host: str) -> ComputeSettings:
    env = role_settings_env(pki, "compute", host=certificate_host)
    return ComputeSettings(
        listen="127.0.0.1:0",
        host=host,
        # never reached: the check comes first
        conductor_addresses=("127.0.0.1:9",),
        instances_path=str(pki.parent / "instances"),
        internal_tls_ca=env["NOVA_GRPC_INTERNAL_TLS_CA"],
        internal_tls_cert=env["NOVA_GRPC_INTERNAL_TLS_CERT"],
        internal_tls_key=env["NOVA_GRPC_INTERNAL_TLS_KEY"],
    )


async def test_another_hosts_certificate_stops_the_start(tmp_path: Path) -> None:
    pki = create_pki(tmp_path / "pki", compute_hosts=["node-a", "node-b"])
    with pytest.raises(WrongIdentity) as refused:
        await start_compute(settings_for(pki, host="node-a", certificate_host="node-b"))
    message = str(refused.value)
    assert "compute-node-b.pem names urn:nova-grpc:compute:node-b" in message
    assert "this service is urn:nova-grpc:compute:node-a" in message
    # nothing was made before the refusal
    assert not (tmp_path / "instances").exists()


async def test_its_own_certificate_starts(tmp_path: Path) -> None:
    pki = create_pki(tmp_path / "pki", compute_hosts=["node-a"])
    service = await start_compute(settings_for(pki, host="node-a", certificate_host="node-a"))
    await service.stop()


def role_files(pki: Path, role: str) -> dict[str, str]:
    env = role_settings_env(pki, role)
    return {
        "internal_tls_ca": env["NOVA_GRPC_INTERNAL_TLS_CA"],
        "internal_tls_cert": env["NOVA_GRPC_INTERNAL_TLS_CERT"],
        "internal_tls_key": env["NOVA_GRPC_INTERNAL_TLS_KEY"],
    }


async def test_api_and_conductor_refuse_another_roles_certificate(
    sqlite_url: str, tmp_path: Path
) -> None:
    pki = create_pki(tmp_path / "pki", compute_hosts=["node-a"])
    with pytest.raises(WrongIdentity, match="names urn:nova-grpc:api, but this service is "
                       "urn:nova-grpc:conductor"):  # fmt: skip
        await start_conductor(
            ConductorSettings(
                listen="127.0.0.1:0", database_url=sqlite_url, **role_files(pki, "api")
            )
        )
    with pytest.raises(WrongIdentity, match="names urn:nova-grpc:conductor, but this service "
                       "is urn:nova-grpc:api"):  # fmt: skip
        await start_api(
            ApiSettings(
                listen="127.0.0.1:0",
                database_url=sqlite_url,
                image_store_path=str(tmp_path / "images"),
                **role_files(pki, "conductor"),
            )
        )
