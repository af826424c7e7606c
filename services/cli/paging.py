"""Every page of a List RPC: novactl shows whole lists, as openstack and kubectl do, however
the api pages them (AIP-158: a client follows next_page_token until it is empty)."""

from __future__ import annotations

from typing import Any

from services.cli.client import Client

# A guard against a server that never ends a listing (a bug there must not hang novactl).
MAX_PAGES = 100_000


def every(client: Client, method: Any, request: Any, *, items: str) -> list[Any]:
    """The ``items`` of every page of ``method`` for ``request`` (whose filters stay as they
    are: the api binds each token to them). ``client.page_size`` asks for pages of that
    size (0: the api's default)."""
    if client.page_size:
        request.page_size = client.page_size
    found: list[Any] = []
    for _ in range(MAX_PAGES):
        page = client.call(method, request)
        found.extend(getattr(page, items))
        if not page.next_page_token:
            return found
        request.page_token = page.next_page_token
    raise RuntimeError(f"{type(request).__name__}: the api never gave a last page")
