"""Internal services listen on, advertise and dial unix-domain sockets (``unix:/path``) as
well as host:port; a malformed socket address is refused at start, naming the setting."""

from __future__ import annotations

import pytest

from services.api.settings import ApiSettings
from services.common.addresses import MAX_UNIX_PATH_BYTES, listen_problem
from services.common.config import ConfigError, load_settings
from services.common.rpc.server import bound_address
from services.compute.settings import ComputeSettings
from services.conductor.settings import ConductorSettings

pytestmark = pytest.mark.timeout(10)

PLAIN = ["--insecure-internal", "1"]


def test_a_socket_file_is_its_own_bound_address() -> None:
    assert bound_address("unix:/run/nova/compute.sock", 1) == "unix:/run/nova/compute.sock"
    assert bound_address("127.0.0.1:0", 40123) == "127.0.0.1:40123"


def test_the_forms_that_name_one_file_plainly() -> None:
    assert listen_problem("unix:/run/nova/c.sock") is None
    assert listen_problem("[::]:8790") is None
    assert "absolute" in (listen_problem("unix:relative.sock") or "")
    assert "absolute" in (listen_problem("unix:///run/c.sock") or "")
    assert "host:port" in (listen_problem("localhost") or "")
    too_long = "unix:/" + "x" * MAX_UNIX_PATH_BYTES
    assert "107 bytes" in (listen_problem(too_long) or "")


def test_compute_and_conductor_take_unix_sockets() -> None:
    compute = load_settings(ComputeSettings, [
        *PLAIN, "--listen", "unix:/run/h1/compute.sock",
        "--advertise-address", "unix:/run/h1/compute.sock",
        "--conductor-addresses", "unix:/run/conductor.sock,127.0.0.1:8780",
    ], environ={})  # fmt: skip
    assert compute.listen == "unix:/run/h1/compute.sock"
    assert compute.conductor_addresses == ("unix:/run/conductor.sock", "127.0.0.1:8780")
    conductor = load_settings(
        ConductorSettings, [*PLAIN, "--listen", "unix:/run/conductor.sock"], environ={}
    )
    assert conductor.listen == "unix:/run/conductor.sock"
    api = load_settings(
        ApiSettings, [*PLAIN, "--conductor-addresses", "unix:/run/conductor.sock"], environ={}
    )
    assert api.conductor_addresses == ("unix:/run/conductor.sock",)


@pytest.mark.parametrize(
    ("settings_type", "flag", "name"),
    [
        (ComputeSettings, "--listen", "listen"),
        (ComputeSettings, "--advertise-address", "advertise_address"),
        (ComputeSettings, "--conductor-addresses", "conductor_addresses"),
        (ConductorSettings, "--listen", "listen"),
        (ApiSettings, "--conductor-addresses", "conductor_addresses"),
    ],
)
def test_a_relative_socket_path_is_refused_naming_the_setting(
    settings_type: type, flag: str, name: str
) -> None:
    with pytest.raises(ConfigError, match=f"setting {name}: a unix-domain socket is unix:/abs"):
        load_settings(settings_type, [*PLAIN, flag, "unix:compute.sock"], environ={})
