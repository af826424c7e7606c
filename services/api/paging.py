"""List pagination as AIP-158 describes it: page_size (0 means the default, a larger value than
the maximum is lowered to it), an opaque page_token bound to the filters that produced it.

A token holds the sort key of the last item of its page (keyset pagination: the next page
starts strictly after it, so an item inserted meanwhile never shifts another one onto a
second page) and a digest of the request that made it: the RPC, the caller's scope and every
filter. A token replayed with other filters, by another project or on another RPC has
another digest and is INVALID_ARGUMENT naming page_token. The digest is a plain hash, not a
MAC: a client that forges a token only chooses where its own, still filtered and scoped,
listing starts; nothing else can be reached through it. Keys hold public values (names,
ids, creation times), never internal row ids.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from services.api.context import RequestContext
from services.common.errors import InvalidArgument

MAX_PAGE_SIZE = 1000
# Lists that had no pagination before: a client built then reads only the first page, so the
# default is the maximum (it sees everything up to 1000 items, as before in practice).
DEFAULT_PAGE_SIZE = MAX_PAGE_SIZE
TOKEN_MAX = 2048
_VERSION = 1

Key = tuple[str | int, ...]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PageRequest:
    page_size: int = 0
    page_token: str = ""


def page_size(requested: int, *, default: int = DEFAULT_PAGE_SIZE, field: str = "page_size") -> int:
    if requested < 0:
        raise InvalidArgument(field, f"must not be negative, got {requested}")
    if requested == 0:
        return default
    return min(requested, MAX_PAGE_SIZE)


def sortable(moment: datetime) -> str:
    """A time as a string that sorts as the time does (UTC, fixed width)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")


def bound(rpc: str, caller: RequestContext, **filters: object) -> dict[str, object]:
    """What a token is bound to: the RPC, who asks (project, admin or not), the filters."""
    return {"rpc": rpc, "project": caller.project_id, "admin": caller.is_admin, **filters}


def _digest(bound_to: Mapping[str, object]) -> str:
    canonical = json.dumps(bound_to, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def encode_token(position: Key, *, bound_to: Mapping[str, object]) -> str:
    raw = json.dumps([_VERSION, _digest(bound_to), *position], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, *, bound_to: Mapping[str, object], field: str = "page_token") -> Key:
    if len(token) > TOKEN_MAX:
        raise InvalidArgument(field, "is not a token this service issued")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (ValueError, binascii.Error) as exc:
        raise InvalidArgument(field, "is not a token this service issued") from exc
    if (
        not isinstance(data, list)
        or len(data) < 3
        or data[0] != _VERSION
        or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in data[1:])
    ):
        raise InvalidArgument(field, "is not a token this service issued")
    if data[1] != _digest(bound_to):
        raise InvalidArgument(
            field,
            "was issued for other filters (or another caller): repeat the request that "
            f"returned it, with the same filters, or start without a {field}",
        )
    return tuple(data[2:])


def page_of(
    items: Sequence[T],
    request: PageRequest,
    *,
    key: Callable[[T], Key],
    bound_to: Mapping[str, object],
) -> tuple[list[T], str]:
    """One page of a list already read whole (lists that are small: catalogues, a project's
    resources), in the order of ``key``, and the next page's token ("" on the last)."""
    size = page_size(request.page_size)
    ordered = sorted(items, key=key)
    if request.page_token:
        after = decode_token(request.page_token, bound_to=bound_to)
        if len(after) != len(key(ordered[0]) if ordered else after):
            raise InvalidArgument("page_token", "is not a token this service issued")
        try:
            ordered = [item for item in ordered if key(item) > after]
        except TypeError as exc:  # a forged key of other types than this list's
            raise InvalidArgument("page_token", "is not a token this service issued") from exc
    page = ordered[:size]
    more = len(ordered) > size
    return page, encode_token(key(page[-1]), bound_to=bound_to) if more else ""
