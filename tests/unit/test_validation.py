from __future__ import annotations

import re

import pytest

from services.api import validation
from services.api.create import display_names, new_reservation_id
from services.common.errors import InvalidArgument


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 256, "at most 255"),
        (" web", "whitespace"),
        ("web\x00", "control characters"),
        ("we\nb", "control characters"),
    ],
)
def test_bad_names_are_rejected_naming_the_field(value: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validation.check_name("name", value)
    assert caught.value.field == "name"
    assert reason in caught.value.message


def test_unicode_names_up_to_255_characters_are_fine() -> None:
    assert validation.check_name("name", "ウェブ-サーバー" * 10) == "ウェブ-サーバー" * 10
    assert validation.check_name("name", "a" * 255) == "a" * 255


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(None, None, (1, 1)), (3, None, (3, 3)), (None, 4, (1, 4)), (2, 5, (2, 5))],
)
def test_counts_defaults(low: int | None, high: int | None, expected: tuple[int, int]) -> None:
    assert validation.check_counts(low, high) == expected


@pytest.mark.parametrize(
    ("low", "high", "field"),
    [
        (0, None, "min_count"),
        (-1, 3, "min_count"),
        (None, 0, "max_count"),
        (5, 2, "max_count"),
        (1, 1001, "max_count"),
    ],
)
def test_bad_counts_name_the_field(low: int | None, high: int | None, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validation.check_counts(low, high)
    assert caught.value.field == field


def test_metadata_limits() -> None:
    assert validation.check_metadata({"k": "v"}) == {"k": "v"}
    with pytest.raises(InvalidArgument, match="at most 128 items"):
        validation.check_metadata({str(i): "v" for i in range(129)})
    with pytest.raises(InvalidArgument, match="keys must be 1 to 255"):
        validation.check_metadata({"": "v"})
    with pytest.raises(InvalidArgument, match="values must be at most 255"):
        validation.check_metadata({"k": "v" * 256})


def test_multi_create_names_follow_nova_template() -> None:
    assert display_names("web", 1) == ["web"]
    assert display_names("web", 3) == ["web-1", "web-2", "web-3"]


def test_reservation_ids_look_like_novas_and_differ() -> None:
    ids = {new_reservation_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"r-[a-z0-9]{10}", i) for i in ids)
