"""Reads of the public API: servers and their actions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from services.api import validation
from services.api.context import RequestContext, require_admin
from services.api.paging import (
    PageRequest,
    bound,
    decode_token,
    encode_token,
    page_of,
    page_size,
    sortable,
)
from services.common import name_patterns
from services.common.domain import Instance, VmState
from services.common.errors import InvalidArgument, NotFound
from services.common.pacing import Pacer, unpaced
from services.common.records import Action, Cursor, ServerFilter
from services.common.stores import (
    ActionStore,
    CatalogStore,
    InstanceStore,
    ServerSearchStore,
    UnitOfWork,
)

T = TypeVar("T")

DEFAULT_PAGE = 100
PRESENT_SLICE = 50
REGEX_MAX = name_patterns.PATTERN_MAX
# Each tag is one more EXISTS per row scanned: bound them (Nova's API allows 50 per server).
TAGS_MAX = 50
FILTER_MAX = 255


@dataclass(frozen=True, slots=True)
class ListQuery:
    reservation_id: str = ""
    name: str = ""
    vm_states: tuple[VmState, ...] = ()
    flavor: str = ""
    image: str = ""
    tags: tuple[str, ...] = ()
    changes_since: datetime | None = None
    host: str = ""
    all_projects: bool = False
    page_size: int = 0
    page_token: str = ""
    # Which request field page_size came from (the deprecated limit, for older clients).
    page_size_field: str = "page_size"

    def filters(self) -> dict[str, object]:
        """Everything that selects the servers: what a page token is bound to."""
        found = asdict(self)
        for paging in ("page_size", "page_token", "page_size_field"):
            del found[paging]
        return found


def check_regex(field: str, pattern: str) -> None:
    """Only patterns the linear-time engine takes (the database evaluates them with it)."""
    try:
        name_patterns.compile_pattern(pattern)
    except name_patterns.BadPattern as exc:
        raise InvalidArgument(field, str(exc)) from exc


def encode_page_token(cursor: Cursor, *, bound_to: dict[str, object]) -> str:
    return encode_token((cursor.created_at.isoformat(), cursor.uuid), bound_to=bound_to)


def decode_page_token(token: str, *, bound_to: dict[str, object]) -> Cursor:
    position = decode_token(token, bound_to=bound_to)
    try:
        created_at, uuid = position
        return Cursor(datetime.fromisoformat(str(created_at)), str(uuid))
    except ValueError as exc:
        raise InvalidArgument("page_token", "is not a token this service issued") from exc


def _check_bounds(query: ListQuery) -> None:
    """Inputs that make the query slower as they grow are bounded, each by name."""
    if len(query.tags) > TAGS_MAX:
        raise InvalidArgument("tags", f"at most {TAGS_MAX}, got {len(query.tags)}")
    for name in ("reservation_id", "flavor", "image", "host", "page_token"):
        value: str = getattr(query, name)
        if len(value) > FILTER_MAX:
            raise InvalidArgument(name, f"at most {FILTER_MAX} characters")
    if any(len(tag) > FILTER_MAX for tag in query.tags):
        raise InvalidArgument("tags", f"each at most {FILTER_MAX} characters")


class QueriesTx(Protocol):
    """The stores the api's reads use, in one read transaction."""

    @property
    def instances(self) -> InstanceStore: ...
    @property
    def catalog(self) -> CatalogStore: ...
    @property
    def actions(self) -> ActionStore: ...
    @property
    def server_search(self) -> ServerSearchStore: ...


class ServerQueries:
    def __init__(
        self,
        uow: UnitOfWork[QueriesTx],
        *,
        others_busy: Callable[[str], bool] | None = None,
        expensive_share: float = 1.0,
        writer_held: Callable[[], bool] | None = None,
    ) -> None:
        """``others_busy(project)``: whether other projects' calls are in flight; a large
        page then takes at most ``expensive_share`` of the interpreter (1: unpaced), and steps
        aside while ``writer_held()`` (a write transaction every create waits for)."""
        self._uow = uow
        self._writer_held = writer_held
        self._others_busy = others_busy
        self._share = expensive_share

    def pacer(self, project_id: str) -> Callable[[], None]:
        """The checkpoint of one large read for ``project_id`` (a page, a watch snapshot)."""
        busy = self._others_busy
        if busy is None or self._share >= 1:
            return unpaced
        if self._writer_held is None:
            return Pacer(lambda: busy(project_id), share=self._share)
        return Pacer(lambda: busy(project_id), share=self._share, held=self._writer_held)

    async def get(self, server_id: str, context: RequestContext, *, field: str = "id") -> Instance:
        server_id = validation.check_uuid_ref(field, server_id)
        found = await self._uow.read(
            lambda tx: tx.instances.get(server_id, project_id=context.scope)
        )
        if found is None:
            raise NotFound("server", server_id, field=field)
        return found

    async def search(
        self,
        context: RequestContext,
        query: ListQuery,
        present: Callable[[Instance], T],
    ) -> tuple[list[T], str]:
        """One page of servers, each as ``present`` makes it, and the token of the next page
        ("" on the last).

        ``present`` (the servicer's conversion) runs on the database thread that read the
        page, inside the caller's project's share of those threads: a page of 1,000 servers
        is ~50 ms of conversion that would otherwise hold the event loop, and every other
        project's calls with it. Reading and converting are paced (services.common.pacing)
        while other projects' calls are in flight."""
        if query.host or query.all_projects:
            field = "host" if query.host else "all_projects"
            require_admin(context, f"{field}: filtering by host or across projects")
        limit = page_size(query.page_size, default=DEFAULT_PAGE, field=query.page_size_field)
        if query.name:
            check_regex("name", query.name)
        _check_bounds(query)
        bound_to = bound("ListServers", context, **query.filters())
        after = decode_page_token(query.page_token, bound_to=bound_to) if query.page_token else None
        # An admin sees only their own project unless they filter by host or ask for all.
        across = context.is_admin and (query.all_projects or bool(query.host))
        project = None if across else context.project_id

        pace = self.pacer(context.project_id)

        def run(tx: QueriesTx) -> tuple[list[T], Cursor | None]:
            flavor_ids: tuple[str, ...] = ()
            if query.flavor:
                found = tx.catalog.find_flavor(query.flavor)
                flavor_ids = (found.id,) if found is not None else ("\x00none",)
            filters = ServerFilter(
                project_id=project,
                reservation_id=query.reservation_id or None,
                name_regex=query.name or None,
                vm_states=query.vm_states,
                flavor_ids=flavor_ids,
                image_id=query.image or None,
                tags=tuple(query.tags),
                changes_since=query.changes_since,
                host=query.host or None,
            )
            servers, cursor = tx.server_search.search(
                filters, limit=limit, after=after, checkpoint=pace
            )
            presented: list[T] = []
            for start in range(0, len(servers), PRESENT_SLICE):
                presented += map(present, servers[start : start + PRESENT_SLICE])
                pace()
            return presented, cursor

        page, cursor = await self._uow.read(run)
        return page, encode_page_token(cursor, bound_to=bound_to) if cursor is not None else ""

    async def actions(
        self, server_id: str, context: RequestContext, paging: PageRequest | None = None
    ) -> tuple[list[Action], str]:
        """One page of a server's actions, oldest first, and the next page's token."""
        server = await self.get(server_id, context, field="server_id")
        found = await self._uow.read(lambda tx: tx.actions.list_actions(server.uuid))
        return page_of(
            found,
            paging or PageRequest(),
            # list_actions' own order (oldest first), by public values only.
            key=lambda a: (sortable(a.start_time), a.request_id, a.action),
            bound_to=bound("ListServerActions", context, server_id=server.uuid),
        )
