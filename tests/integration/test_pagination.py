"""ListServers' pages on a real database: every server that exists for the whole listing is
listed exactly once whatever is inserted between two pages (at any creation time, as a
transaction that commits late would), and a page token is bound to the filters and the
caller that produced it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.context import RequestContext
from services.api.queries import ListQuery, ServerQueries
from services.common.db.engine import Database
from services.common.db.instances import insert_instances
from services.common.db.migrate import upgrade
from services.common.db.stores import SqlUnitOfWork
from services.common.domain import Flavor, Instance, PowerState, VmState
from services.common.errors import InvalidArgument
from services.common.generated.novagrpc.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    compute_services_pb2,
    compute_services_pb2_grpc,
    external_networks_pb2,
    external_networks_pb2_grpc,
    floating_ips_pb2,
    floating_ips_pb2_grpc,
    keypairs_pb2,
    keypairs_pb2_grpc,
    networks_pb2,
    networks_pb2_grpc,
    security_groups_pb2,
    security_groups_pb2_grpc,
    server_groups_pb2,
    server_groups_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
)
from tests.integration.test_api_servers import refused
from tests.integration.test_pipeline import create, wait_for_compute
from tests.support.auth import Authed
from tests.support.keys import ed25519_public_key
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.timeout(240)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# Few distinct times: many servers share one, so the tie-break (the uuid) is exercised.
times = st.integers(0, 5).map(lambda s: T0 + timedelta(seconds=s))
FLAVOR = Flavor("1", "m1.tiny", 1, 64, 1)


def as_is(instance: Instance) -> Instance:
    """The page's servers as the store gives them (the servicer presents them as protobuf)."""
    return instance


def server(project: str, created_at: datetime, name: str = "s") -> Instance:
    return Instance(
        uuid=str(uuid.uuid4()), id=None, display_name=name, project_id=project, flavor=FLAVOR,
        image_id="img", reservation_id="r-x", vm_state=VmState.ACTIVE, task_state=None,
        power_state=PowerState.RUNNING, host=None, node=None, metadata={},
        created_at=created_at,
    )  # fmt: skip


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    path: Path = tmp_path_factory.mktemp("pages") / "nova.sqlite"
    url = f"sqlite:///{path}"
    upgrade(url)
    database = Database(url)
    yield database
    database.close()


def add(db: Database, instances: list[Instance]) -> None:
    with db.begin() as connection:
        insert_instances(connection, instances)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    initial=st.lists(times, max_size=25),
    page_size=st.integers(1, 7),
    inserts=st.lists(st.lists(times, max_size=3), max_size=12),
)
def test_every_server_once_across_pages_under_concurrent_inserts(
    db: Database, initial: list[datetime], page_size: int, inserts: list[list[datetime]]
) -> None:
    project = f"p-{uuid.uuid4()}"  # each example its own project: examples do not mix
    caller = RequestContext(project_id=project, request_id="req")
    before = [server(project, t) for t in initial]
    add(db, before)
    queries = ServerQueries(SqlUnitOfWork(db))

    async def listing() -> list[str]:
        seen: list[str] = []
        token = ""
        for round_ in range(1000):
            page, token = await queries.search(
                caller, ListQuery(page_size=page_size, page_token=token), as_is
            )
            assert len(page) <= page_size
            seen.extend(i.uuid for i in page)
            if not token:
                return seen
            # Servers created meanwhile, some "earlier" than the page just read.
            if round_ < len(inserts):
                add(db, [server(project, t) for t in inserts[round_]])
        raise AssertionError("the listing never ended")

    seen = asyncio.run(listing())
    assert len(seen) == len(set(seen)), "no server twice"
    assert {i.uuid for i in before} <= set(seen), "every server that was there throughout"


def test_a_page_token_is_bound_to_its_filters_and_caller(db: Database) -> None:
    project = f"p-{uuid.uuid4()}"
    add(db, [server(project, T0 + timedelta(seconds=i), name=f"web-{i}") for i in range(5)])
    caller = RequestContext(project_id=project, request_id="req")
    queries = ServerQueries(SqlUnitOfWork(db))

    async def run() -> None:
        query = ListQuery(name="^web-", page_size=2)
        first, token = await queries.search(caller, query, as_is)
        assert len(first) == 2 and token
        # The same filters continue the listing.
        second, _ = await queries.search(caller, ListQuery(name="^web-", page_token=token), as_is)
        assert not {i.uuid for i in first} & {i.uuid for i in second}
        other = RequestContext(project_id="other", request_id="r")
        replays = [
            (caller, ListQuery(name="^db-", page_token=token)),
            (caller, ListQuery(name="^web-", image="img", page_token=token)),
            (other, ListQuery(name="^web-", page_token=token)),
            (caller, ListQuery(name="^web-", page_token=token[:-2])),
        ]  # fmt: skip
        for who, replay in replays:
            with pytest.raises(InvalidArgument) as raised:
                await queries.search(who, replay, as_is)
            assert raised.value.field == "page_token"
        # AIP-158: a page size above the maximum is lowered to it; a negative one is refused.
        everything, token = await queries.search(caller, ListQuery(page_size=5000), as_is)
        assert len(everything) == 5 and token == ""
        with pytest.raises(InvalidArgument) as raised:
            await queries.search(caller, ListQuery(page_size=-1), as_is)
        assert raised.value.field == "page_size"

    asyncio.run(run())


async def allocate_floating_addresses(stack: Stack) -> None:
    """Two external networks (admin), two floating addresses of each for the project."""
    externals = Authed(
        external_networks_pb2_grpc.ExternalNetworksStub(stack.channel), stack.admin_token
    )
    floating = Authed(floating_ips_pb2_grpc.FloatingIPsStub(stack.channel), stack.token)
    for i in range(2):
        outside = await externals.CreateExternalNetwork(
            external_networks_pb2.CreateExternalNetworkRequest(
                name=f"x{i}", cidr=f"203.0.11{i}.0/24", bridge=f"xbr{i}",
                allocation_pools=[networks_pb2.AllocationPool(
                    start=f"203.0.11{i}.10", end=f"203.0.11{i}.20")],
            ),
            timeout=5,
        )  # fmt: skip
        for _ in range(2):
            await floating.AllocateFloatingIP(
                floating_ips_pb2.AllocateFloatingIPRequest(external_network_id=outside.id),
                timeout=5,
            )


async def test_every_list_rpc_pages_and_binds_its_tokens(sqlite_url: str, tmp_path: Path) -> None:
    """Each List RPC through a real client: page by page (page_size 1) gives what one page
    gives, and a token replayed by another caller or on another RPC is INVALID_ARGUMENT."""
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        as_admin = (stack.channel, stack.admin_token)
        as_member = (stack.channel, stack.token)
        flavors = Authed(catalog_pb2_grpc.FlavorsStub(stack.channel), stack.admin_token)
        for i in range(3):
            await flavors.CreateFlavor(
                catalog_pb2.CreateFlavorRequest(name=f"p{i}", vcpus=1, ram=64 + i, disk=0),
                timeout=5,
            )
        keypairs = Authed(keypairs_pb2_grpc.KeypairsStub(stack.channel), stack.token)
        groups = Authed(server_groups_pb2_grpc.ServerGroupsStub(stack.channel), stack.token)
        networks = Authed(networks_pb2_grpc.NetworksStub(stack.channel), stack.token)
        secgroups = Authed(security_groups_pb2_grpc.SecurityGroupsStub(stack.channel), stack.token)
        for i in range(3):
            await keypairs.ImportKeypair(keypairs_pb2.ImportKeypairRequest(
                name=f"k{i}", public_key=ed25519_public_key()), timeout=5)  # fmt: skip
            await groups.CreateServerGroup(server_groups_pb2.CreateServerGroupRequest(
                name=f"g{i}", group_policy=server_groups_pb2.SERVER_GROUP_POLICY_AFFINITY),
                timeout=5)  # fmt: skip
            await networks.CreateNetwork(networks_pb2.CreateNetworkRequest(
                name=f"n{i}", cidr=f"10.9{i}.0.0/24"), timeout=5)  # fmt: skip
            await secgroups.CreateSecurityGroup(
                security_groups_pb2.CreateSecurityGroupRequest(name=f"s{i}"), timeout=5
            )
        await allocate_floating_addresses(stack)
        reply = await stack.servers.CreateServer(create(max_count=2), timeout=5)
        server, _ = await stack.wait_settled(list(reply.server_ids))
        await stack.servers.StopServer(servers_pb2.StopServerRequest(id=server.id), timeout=5)
        lists = [
            (as_member, catalog_pb2_grpc.FlavorsStub, "ListFlavors",
             catalog_pb2.ListFlavorsRequest, {}, "flavors"),
            (as_member, catalog_pb2_grpc.ImagesStub, "ListImages",
             catalog_pb2.ListImagesRequest, {}, "images"),
            (as_member, keypairs_pb2_grpc.KeypairsStub, "ListKeypairs",
             keypairs_pb2.ListKeypairsRequest, {}, "keypairs"),
            (as_member, server_groups_pb2_grpc.ServerGroupsStub, "ListServerGroups",
             server_groups_pb2.ListServerGroupsRequest, {}, "server_groups"),
            (as_member, networks_pb2_grpc.NetworksStub, "ListNetworks",
             networks_pb2.ListNetworksRequest, {}, "networks"),
            (as_member, security_groups_pb2_grpc.SecurityGroupsStub, "ListSecurityGroups",
             security_groups_pb2.ListSecurityGroupsRequest, {}, "security_groups"),
            (as_admin, compute_services_pb2_grpc.ComputeServicesStub, "ListComputeServices",
             compute_services_pb2.ListComputeServicesRequest, {}, "services"),
            (as_member, servers_pb2_grpc.ServersStub, "ListServerActions",
             servers_pb2.ListServerActionsRequest, {"server_id": server.id}, "actions"),
            (as_member, servers_pb2_grpc.ServersStub, "ListServers",
             servers_pb2.ListServersRequest, {}, "servers"),
            (as_member, external_networks_pb2_grpc.ExternalNetworksStub, "ListExternalNetworks",
             external_networks_pb2.ListExternalNetworksRequest, {}, "external_networks"),
            (as_member, floating_ips_pb2_grpc.FloatingIPsStub, "ListFloatingIPs",
             floating_ips_pb2.ListFloatingIPsRequest, {}, "floating_ips"),
        ]  # fmt: skip
        paged_rpcs: set[str] = set()
        for (channel, token), stub_type, rpc, request_type, fields, items in lists:
            call = getattr(Authed(stub_type(channel), token), rpc)
            whole = await call(request_type(**fields), timeout=5)
            assert not whole.next_page_token, rpc
            expected = [m.SerializeToString() for m in getattr(whole, items)]
            paged: list[bytes] = []
            first_token = ""
            request = request_type(page_size=1, **fields)
            while True:
                page = await call(request, timeout=5)
                assert len(getattr(page, items)) <= 1, rpc
                paged.extend(m.SerializeToString() for m in getattr(page, items))
                first_token = first_token or page.next_page_token
                if not page.next_page_token:
                    break
                request.page_token = page.next_page_token
            assert bool(first_token) == (len(expected) > 1), rpc
            if first_token:
                paged_rpcs.add(rpc)
                # the same token from a caller of another scope (admin vs member)
                other = as_admin if token == stack.token else as_member
                replay = getattr(Authed(stub_type(other[0]), other[1]), rpc)
                bad = await refused(
                    replay(request_type(page_token=first_token, **fields), timeout=5)
                )
                assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT, rpc
                assert "page_token" in bad.details(), rpc
            assert paged == expected, rpc
        # one image (the store holds one file) and one compute host: one page each
        assert paged_rpcs == {rpc for *_, rpc, _, _, _ in lists} - {
            "ListImages", "ListComputeServices"}  # fmt: skip
        # a token of one RPC on another
        keys = await keypairs.ListKeypairs(keypairs_pb2.ListKeypairsRequest(page_size=1), timeout=5)
        on_groups = server_groups_pb2.ListServerGroupsRequest(page_token=keys.next_page_token)
        wrong = await refused(groups.ListServerGroups(on_groups, timeout=5))
        assert wrong.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in wrong.details()
