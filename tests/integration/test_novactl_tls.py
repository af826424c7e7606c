"""A novactl profile with a CA talks TLS to an api behind a TLS terminator, and its token
command's token is the one sent. The api here is a Flavors double over real gRPC with TLS on
port 0 (the api itself serves plaintext; TLS is the terminator's job)."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from services.cli.__main__ import main
from services.common.generated.novagrpc.v1 import catalog_pb2, catalog_pb2_grpc
from services.common.pki import create_pki

pytestmark = pytest.mark.timeout(60)


class Flavors(catalog_pb2_grpc.FlavorsServicer):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def ListFlavors(
        self, request: catalog_pb2.ListFlavorsRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.ListFlavorsResponse:
        self.tokens.append(dict(context.invocation_metadata()).get("authorization", ""))
        return catalog_pb2.ListFlavorsResponse(flavors=[catalog_pb2.Flavor(id="1", name="tls")])


@pytest.fixture
def tls_api(tmp_path: Path) -> Iterator[tuple[str, Flavors, Path]]:
    pki = create_pki(tmp_path / "pki")
    credentials = grpc.ssl_server_credentials(
        [((pki / "api-key.pem").read_bytes(), (pki / "api.pem").read_bytes())]
    )
    flavors = Flavors()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    catalog_pb2_grpc.add_FlavorsServicer_to_server(flavors, server)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield f"127.0.0.1:{port}", flavors, pki
    server.stop(grace=None)


def test_a_profile_with_a_ca_and_a_token_command(
    tls_api: tuple[str, Flavors, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    address, flavors, pki = tls_api
    (tmp_path / "ca.pem").write_bytes((pki / "ca.pem").read_bytes())
    config = tmp_path / "config.toml"
    config.write_text(
        f'[profiles.secure]\nendpoint = "{address}"\nca = "ca.pem"\n'
        f'token_command = "{sys.executable} -c \'print(\\"from-command\\")\'"\n'
        f'[profiles.plain]\nendpoint = "http://{address}"\ntoken = "t"\n'
        f'[profiles.system]\nendpoint = "{address}"\ntoken = "t"\n'
    )
    for name in ("NOVACTL_ENDPOINT", "NOVACTL_TOKEN", "NOVACTL_CACERT", "NOVACTL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NOVACTL_CONFIG", str(config))
    out = io.StringIO()
    assert main(["flavor", "list", "-o", "json", "--profile", "secure"], out) == 0
    assert [f["name"] for f in json.loads(out.getvalue())] == ["tls"]
    assert flavors.tokens == ["Bearer from-command"]
    # the same api through an http:// profile: plaintext to a TLS port fails, nothing is sent
    refused = main(["flavor", "list", "--profile", "plain", "--timeout", "2"], io.StringIO())
    assert refused == 1 and "UNAVAILABLE" in capsys.readouterr().err
    assert flavors.tokens == ["Bearer from-command"]
    # host:port is TLS verified against the system's roots, which do not know this CA ...
    unknown_ca = main(["flavor", "list", "--profile", "system", "--timeout", "2"], io.StringIO())
    assert unknown_ca == 1 and "UNAVAILABLE" in capsys.readouterr().err
    # ... and --cacert on the line names the CA to trust
    again = main(["flavor", "list", "--profile", "system", "--cacert", str(pki / "ca.pem")],
                 io.StringIO())  # fmt: skip
    assert again == 0 and flavors.tokens[-1] == "Bearer t"
