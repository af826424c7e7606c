"""Pure validation of the public requests: every rejection names the field to fix."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

from services.common.errors import InvalidArgument
from services.common.request_spec import parse_availability_zone

NAME_MAX = 255
REF_MAX = 255
METADATA_MAX_ITEMS = 128
METADATA_KEY_MAX = 255
METADATA_VALUE_MAX = 255
# One request may ask for at most this many servers (quotas come on top of it).
MAX_COUNT_PER_REQUEST = 1000


def _has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch) in {"Cc", "Cs"} for ch in text)


def check_name(field: str, value: str, *, max_length: int = NAME_MAX) -> str:
    if not value or not value.strip():
        raise InvalidArgument(field, "must not be empty")
    if len(value) > max_length:
        raise InvalidArgument(field, f"must be at most {max_length} characters, got {len(value)}")
    if value != value.strip():
        raise InvalidArgument(field, "must not start or end with whitespace")
    if _has_control_chars(value):
        raise InvalidArgument(field, "must not contain control characters")
    return value


def check_ref(field: str, value: str) -> str:
    """A flavor or image reference (id or name)."""
    return check_name(field, value, max_length=REF_MAX)


def check_counts(min_count: int | None, max_count: int | None) -> tuple[int, int]:
    low = 1 if min_count is None else min_count
    if low < 1:
        raise InvalidArgument("min_count", f"must be at least 1, got {low}")
    high = low if max_count is None else max_count
    if high < 1:
        raise InvalidArgument("max_count", f"must be at least 1, got {high}")
    if high < low:
        raise InvalidArgument("max_count", f"must be at least min_count ({low}), got {high}")
    if high > MAX_COUNT_PER_REQUEST:
        raise InvalidArgument(
            "max_count", f"must be at most {MAX_COUNT_PER_REQUEST} per request, got {high}"
        )
    return low, high


def check_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    if len(metadata) > METADATA_MAX_ITEMS:
        raise InvalidArgument(
            "metadata", f"at most {METADATA_MAX_ITEMS} items, got {len(metadata)}"
        )
    for key, value in metadata.items():
        if not key or len(key) > METADATA_KEY_MAX:
            raise InvalidArgument("metadata", f"keys must be 1 to {METADATA_KEY_MAX} characters")
        if len(value) > METADATA_VALUE_MAX:
            raise InvalidArgument(
                f"metadata[{key[:40]}]", f"values must be at most {METADATA_VALUE_MAX} characters"
            )
        if _has_control_chars(key):
            raise InvalidArgument("metadata", "keys must not contain control characters")
    return dict(metadata)


def check_uuid_ref(field: str, value: str) -> str:
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if len(value) > 64 or _has_control_chars(value):
        raise InvalidArgument(field, "is not a server id")
    return value


MAX_HINT_SERVERS = 64


def check_availability_zone(value: str) -> tuple[str | None, str | None, str | None]:
    """Nova's ``zone[:host[:node]]``; the host part is checked for admin rights elsewhere."""
    if len(value) > 255 or _has_control_chars(value):
        raise InvalidArgument("availability_zone", "must be at most 255 printable characters")
    try:
        return parse_availability_zone(value)
    except ValueError as exc:
        raise InvalidArgument("availability_zone", str(exc)) from exc


def check_server_list(field: str, values: list[str]) -> tuple[str, ...]:
    if len(values) > MAX_HINT_SERVERS:
        raise InvalidArgument(field, f"at most {MAX_HINT_SERVERS} servers")
    return tuple(check_uuid_ref(field, v) for v in values)
