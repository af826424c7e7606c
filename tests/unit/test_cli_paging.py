"""novactl's every(): it follows next_page_token to the end, sends the same filters with each
token (the api binds tokens to them) and the chosen page size."""

from __future__ import annotations

from typing import Any

import pytest

from services.cli.paging import every
from services.common.generated.novagrpc.v1 import servers_pb2

pytestmark = pytest.mark.timeout(10)


class PagingClient:
    """Serves ``items`` two by two, recording each request as sent."""

    def __init__(self, items: list[str], page_size: int = 0) -> None:
        self.items = items
        self.page_size = page_size
        self.sent: list[servers_pb2.ListServersRequest] = []

    def call(self, method: Any, request: servers_pb2.ListServersRequest) -> Any:
        del method
        self.sent.append(servers_pb2.ListServersRequest.FromString(request.SerializeToString()))
        start = int(request.page_token or 0)
        size = request.page_size or 2
        end = start + size
        return servers_pb2.ListServersResponse(
            servers=[servers_pb2.Server(id=i) for i in self.items[start:end]],
            next_page_token=str(end) if end < len(self.items) else "",
        )


@pytest.mark.parametrize(("count", "page_size", "calls"), [(0, 0, 1), (5, 0, 3), (5, 1, 5)])
def test_every_page_once_with_the_same_filters(count: int, page_size: int, calls: int) -> None:
    items = [f"s{i}" for i in range(count)]
    client = PagingClient(items, page_size)
    request = servers_pb2.ListServersRequest(name="^web", tags=["a"])
    found = every(client, None, request, items="servers")  # type: ignore[arg-type]
    assert [s.id for s in found] == items
    assert len(client.sent) == calls
    assert all((r.name, list(r.tags), r.page_size) == ("^web", ["a"], page_size)
               for r in client.sent)  # fmt: skip
    assert [r.page_token for r in client.sent] == ["", *(r.page_token for r in client.sent[1:])]
    assert all(r.page_token for r in client.sent[1:])
