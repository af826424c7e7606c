"""Property tests against the running services: no input, however hostile, gets UNKNOWN or
INTERNAL back; bad input gets a clear status with an ErrorInfo (a stable reason); and no call
takes more than a second of the api's time on this small database (read from the api's own
latency histogram at the end)."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.cli.manage import issue_token
from services.common.generated.novagrpc.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    keypairs_pb2,
    keypairs_pb2_grpc,
    quotas_pb2,
    quotas_pb2_grpc,
    server_groups_pb2,
    server_groups_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
)
from tests.support.auth import Authed
from tests.support.processes import ServiceSet
from tests.support.sqlite import copy_database
from tests.support.status import error_info

pytestmark = pytest.mark.timeout(300)

FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
nasty = text | st.sampled_from(
    ["", " ", "../../../etc/passwd", "a\x00b", "]]><x/>", "m1.tiny", "nova-tiny", "é" * 300,
     "x" * 5000, "%(uuid)s", "*", ".*", "(", "\n"]
)  # fmt: skip
# Patterns that take a backtracking engine exponential or high-polynomial time on the names
# the fixture stores ("aaaa…a!"), and some that RE2 refuses.
slow_patterns = st.sampled_from(
    ["^(a+)+$", "(a|a)*b", "(a|aa)+$", "((a*)*)*b", r"^(\w+\s?)+$", "(.*a){25}", "(a*)*$",
     "(?:a?){40}a{40}", r"(a)\1", "(?=a)a", "a{1001}", "(x+x+)+y", "(" * 200]
)  # fmt: skip
counts = st.none() | st.integers(-3, 3) | st.sampled_from([0, 1001, -(2**31), 2**31 - 1])
HYPOTHESIS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class Api:
    def __init__(self, channel: grpc.Channel, token: str, admin: str, *, metrics: str) -> None:
        self.metrics = metrics
        self.channel, self.token = channel, token
        self.servers = Authed(servers_pb2_grpc.ServersStub(channel), token)
        self.groups = Authed(server_groups_pb2_grpc.ServerGroupsStub(channel), token)
        self.keypairs = Authed(keypairs_pb2_grpc.KeypairsStub(channel), token)
        self.images = Authed(catalog_pb2_grpc.ImagesStub(channel), token)
        self.flavors = Authed(catalog_pb2_grpc.FlavorsStub(channel), admin)
        self.quotas = Authed(quotas_pb2_grpc.QuotasStub(channel), admin)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Iterator[Api]:
    workdir: Path = tmp_path_factory.mktemp("hostile")
    url = copy_database(migrated_sqlite, workdir / "nova.sqlite")
    _, token = issue_token(url, "demo")
    _, admin = issue_token(url, "ops", admin=True)
    services = ServiceSet(
        workdir,
        env={"NOVA_GRPC_RATE_LIMIT_PER_SECOND": "0", "NOVA_GRPC_IMAGE_STORE_PATH": str(workdir),
             "NOVA_GRPC_METRICS_LISTEN": "127.0.0.1:0"},
    )  # fmt: skip
    api_service, _, _ = services.start_all_in_one(url)
    channel = grpc.insecure_channel(api_service.address)
    found = re.search(r"metrics on http://([0-9.:]+)/metrics", api_service.log())
    assert found, "the api announces its metrics address"
    hostile = Api(channel, token, admin, metrics=found.group(1))
    # names a backtracking pattern match would choke on
    for length in (30, 60, 200):
        hostile.servers.CreateServer(
            servers_pb2.CreateServerRequest(
                name="a" * length + "!", flavor_ref="m1.tiny", image_ref="nova-tiny"
            ),
            timeout=20,
        )
    yield hostile
    channel.close()
    services.stop()


def answered(call: Callable[..., Any], request: Any, **kwargs: Any) -> grpc.StatusCode:
    try:
        call(request, timeout=20, **kwargs)
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
        assert code not in FORBIDDEN, f"{code}: {exc.details()}"  # type: ignore[attr-defined]
        assert exc.details(), "an error must say why"  # type: ignore[attr-defined]
        error_info(exc)  # and a reason a client can act on (AIP-193)
        return code  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@HYPOTHESIS
@given(name=nasty, flavor=nasty, image=nasty, low=counts, high=counts,
       metadata=st.dictionaries(nasty, nasty, max_size=4), zone=nasty,
       user_data=nasty, tags=st.lists(nasty, max_size=3), networks=st.lists(nasty, max_size=3),
       key_name=nasty, description=nasty, group=nasty)  # fmt: skip
def test_create_server_never_fails_internally(
    api: Api, name: str, flavor: str, image: str, low: int | None, high: int | None,
    metadata: dict[str, str], zone: str, user_data: str, tags: list[str], networks: list[str],
    key_name: str, description: str, group: str,
) -> None:  # fmt: skip
    request = servers_pb2.CreateServerRequest(
        name=name, flavor_ref=flavor, image_ref=image, metadata=metadata, availability_zone=zone,
        user_data=user_data, tags=tags, networks=networks, key_name=key_name,
        description=description, scheduler_hints=servers_pb2.SchedulerHints(group=group),
    )  # fmt: skip
    if low is not None:
        request.min_count = low
    if high is not None:
        request.max_count = high
    code = answered(api.servers.CreateServer, request)
    if code == grpc.StatusCode.OK:
        assert 1 <= (high or low or 1) <= 1000


@HYPOTHESIS
@given(server_id=nasty, regex=nasty, limit=st.integers(-5, 2000), token=nasty,
       tags=st.lists(nasty, max_size=3), flavor=nasty)  # fmt: skip
def test_server_reads_never_fail_internally(
    api: Api, server_id: str, regex: str, limit: int, token: str, tags: list[str], flavor: str
) -> None:
    answered(api.servers.GetServer, servers_pb2.GetServerRequest(id=server_id))
    answered(api.servers.DeleteServer, servers_pb2.DeleteServerRequest(id=server_id))
    answered(api.servers.StopServer, servers_pb2.StopServerRequest(id=server_id))
    answered(api.servers.ListServerActions,
             servers_pb2.ListServerActionsRequest(server_id=server_id))  # fmt: skip
    answered(
        api.servers.ListServers,
        servers_pb2.ListServersRequest(name=regex, limit=limit, page_token=token, tags=tags,
                                       flavor=flavor),
    )  # fmt: skip


@HYPOTHESIS
@given(name=nasty, key=nasty, policy=nasty, file=nasty, disk_format=nasty, project=nasty,
       vcpus=st.integers(-2**31, 2**31 - 1), ram=st.integers(-2**31, 2**31 - 1))  # fmt: skip
def test_catalogue_and_account_calls_never_fail_internally(
    api: Api, name: str, key: str, policy: str, file: str, disk_format: str, project: str,
    vcpus: int, ram: int,
) -> None:  # fmt: skip
    answered(
        api.keypairs.ImportKeypair, keypairs_pb2.ImportKeypairRequest(name=name, public_key=key)
    )
    answered(api.keypairs.GetKeypair, keypairs_pb2.GetKeypairRequest(name=name))
    answered(api.groups.CreateServerGroup,
             server_groups_pb2.CreateServerGroupRequest(name=name, policy=policy))  # fmt: skip
    answered(api.groups.GetServerGroup, server_groups_pb2.GetServerGroupRequest(id=name))
    answered(api.images.RegisterImage, catalog_pb2.RegisterImageRequest(
        name=name, file=file, disk_format=disk_format, initrd_file=file))  # fmt: skip
    answered(api.images.GetImage, catalog_pb2.GetImageRequest(id=name))
    flavor = catalog_pb2.CreateFlavorRequest(name=name, id=key, vcpus=vcpus, ram=ram, disk=1)
    answered(api.flavors.CreateFlavor, flavor)
    answered(api.flavors.GetFlavor, catalog_pb2.GetFlavorRequest(id=name))
    answered(api.quotas.GetQuota, quotas_pb2.GetQuotaRequest(project_id=project))
    answered(api.quotas.SetQuota, quotas_pb2.SetQuotaRequest(project_id=project, instances=vcpus))


@HYPOTHESIS
@given(server_id=nasty, reservation=nasty)
def test_watch_never_fails_internally(api: Api, server_id: str, reservation: str) -> None:
    request = servers_pb2.WatchServersRequest(server_id=server_id, reservation_id=reservation)
    try:
        for _ in api.servers.WatchServers(request, timeout=0.5):
            break
    except grpc.RpcError as exc:
        assert exc.code() not in FORBIDDEN, exc.details()  # type: ignore[attr-defined]
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
            error_info(exc)  # (the client's own 0.5 s deadline has no server status)


RAW_METHODS = ["/novagrpc.v1.Servers/CreateServer", "/novagrpc.v1.Servers/GetServer",
               "/novagrpc.v1.Servers/ListServers", "/novagrpc.v1.Keypairs/ImportKeypair",
               "/novagrpc.v1.Servers/NoSuchMethod", "/no.such.Service/Get"]  # fmt: skip


@HYPOTHESIS
@given(method=st.sampled_from(RAW_METHODS), body=st.binary(max_size=300))
def test_bytes_that_are_not_a_request_get_a_reason(api: Api, method: str, body: bytes) -> None:
    """Any bytes on the wire: a status with an ErrorInfo, never INTERNAL (gRPC's own answer to
    a request that does not parse)."""
    call = api.channel.unary_unary(method)
    answered(call, body, metadata=(("authorization", f"Bearer {api.token}"),))


@HYPOTHESIS
@given(pattern=slow_patterns | nasty)
def test_name_patterns_cannot_make_a_list_slow(api: Api, pattern: str) -> None:
    answered(api.servers.ListServers, servers_pb2.ListServersRequest(name=pattern, limit=1000))


def server_seconds_over_one(address: str) -> tuple[dict[str, float], float]:
    """Calls per method that took the api longer than one second (its own histogram), and
    how many calls it measured."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    within: dict[str, float] = {}
    total: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("grpc_server_handling_seconds_bucket"):
            continue
        method = re.search(r'grpc_method="([^"]+)"', line)
        bucket = re.search(r'le="([^"]+)"', line)
        if method is None or bucket is None or 'grpc_type="unary"' not in line:
            continue  # a stream (a watch, a console) lasts as long as its client wants
        value = float(line.rpartition(" ")[2])
        if bucket.group(1) == "1.0":
            within[method.group(1)] = within.get(method.group(1), 0) + value
        elif bucket.group(1) == "+Inf":
            total[method.group(1)] = total.get(method.group(1), 0) + value
    over = {m: n - within.get(m, 0) for m, n in total.items() if n - within.get(m, 0) > 0}
    return over, sum(total.values())


def test_no_call_took_more_than_a_second_of_server_time(api: Api) -> None:
    """Runs last in this module: over every call the property tests above made."""
    over, measured = server_seconds_over_one(api.metrics)
    assert measured > 300  # the calls of the property tests above
    assert over == {}
