"""The api's one admin check and the request-id metadata every internal call carries."""

from __future__ import annotations

import pytest

from services.api.context import RequestContext, require_admin
from services.common.context import REQUEST_ID_HEADER, request_metadata
from services.common.errors import PermissionDenied


def test_require_admin_lets_admins_through_and_names_what_was_refused() -> None:
    require_admin(RequestContext("p1", "req-1", is_admin=True), "setting quotas")
    with pytest.raises(PermissionDenied) as caught:
        require_admin(RequestContext("p1", "req-1"), "setting quotas")
    assert caught.value.message == "setting quotas is admin-only"
    assert caught.value.field is None


def test_request_metadata_carries_the_id_and_nothing_without_one() -> None:
    assert request_metadata("req-1") == ((REQUEST_ID_HEADER, "req-1"),)
    assert request_metadata("") is None
