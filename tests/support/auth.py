"""Attach a bearer token to every call of a generated stub (sync or asyncio)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Authed:
    def __init__(self, stub: Any, token: str) -> None:
        self._stub = stub
        self._header = ("authorization", f"Bearer {token}")

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)

        def call(request: Any, **kwargs: Any) -> Any:
            kwargs["metadata"] = (*kwargs.get("metadata", ()), self._header)
            return method(request, **kwargs)

        return call
