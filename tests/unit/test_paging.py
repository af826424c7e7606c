"""page_of, the pagination of lists read whole: every item that is there throughout is on
exactly one page whatever is added between pages, and a token is bound to what made it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api.paging import (
    MAX_PAGE_SIZE,
    PageRequest,
    decode_token,
    encode_token,
    page_of,
    page_size,
)
from services.common.errors import InvalidArgument

pytestmark = pytest.mark.timeout(60)

Item = tuple[str, int]
names = st.text(alphabet="abc", min_size=1, max_size=3)


def key(item: Item) -> tuple[str, int]:
    return item


@given(
    initial=st.sets(st.tuples(names, st.integers(0, 50)), max_size=40),
    size=st.integers(1, 8),
    added=st.lists(st.sets(st.tuples(names, st.integers(51, 99)), max_size=3), max_size=20),
)
def test_every_item_once_across_pages_while_items_are_added(
    initial: set[Item], size: int, added: list[set[Item]]
) -> None:
    items = list(initial)
    bound_to = {"rpc": "ListThings", "project": "p"}
    seen: list[Item] = []
    token = ""
    for round_ in range(500):
        page, token = page_of(items, PageRequest(size, token), key=key, bound_to=bound_to)
        assert len(page) <= size
        seen.extend(page)
        if not token:
            break
        if round_ < len(added):
            items.extend(added[round_] - set(items))
    assert len(seen) == len(set(seen))
    assert initial <= set(seen)


def test_a_token_is_bound_to_its_filters() -> None:
    items = [("a", 1), ("b", 2), ("c", 3)]
    mine = {"rpc": "ListThings", "project": "p", "name": "x"}
    _, token = page_of(items, PageRequest(1), key=key, bound_to=mine)
    assert decode_token(token, bound_to=mine) == ("a", 1)
    for other in ({**mine, "name": "y"}, {**mine, "project": "q"}, {**mine, "rpc": "ListOther"}):
        with pytest.raises(InvalidArgument, match="other filters") as raised:
            page_of(items, PageRequest(1, token), key=key, bound_to=other)
        assert raised.value.field == "page_token"


@pytest.mark.parametrize("token", ["garbage", "W10", "x" * 5000, encode_token((), bound_to={})])
def test_a_token_not_issued_here_is_refused(token: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        page_of([("a", 1)], PageRequest(1, token), key=key, bound_to={})
    assert raised.value.field == "page_token"


def test_a_forged_position_of_other_types_is_refused() -> None:
    forged = encode_token((1, "a"), bound_to={})
    with pytest.raises(InvalidArgument) as raised:
        page_of([("a", 1), ("b", 2)], PageRequest(1, forged), key=key, bound_to={})
    assert raised.value.field == "page_token"


def test_page_size_as_aip_158() -> None:
    assert page_size(0, default=100) == 100
    assert page_size(7) == 7
    assert page_size(MAX_PAGE_SIZE + 1) == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument) as raised:
        page_size(-1, field="limit")
    assert raised.value.field == "limit"
