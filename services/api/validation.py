"""Pure validation of the public requests: every rejection names the field to fix."""

from __future__ import annotations

import base64
import binascii
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


def _xml_unsafe(text: str) -> bool:
    """Characters XML 1.0 cannot carry, or would not carry back intact (a carriage return
    becomes a line feed): metadata ends up in the libvirt domain XML."""
    return any(
        not (ch in "\t\n" or "\x20" <= ch <= "\ud7ff" or "\ue000" <= ch <= "\ufffd"
             or ch >= "\U00010000")
        for ch in text
    )  # fmt: skip


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


def check_metadata(metadata: Mapping[str, str], *, field: str = "metadata") -> dict[str, str]:
    if len(metadata) > METADATA_MAX_ITEMS:
        raise InvalidArgument(field, f"at most {METADATA_MAX_ITEMS} items, got {len(metadata)}")
    for key, value in metadata.items():
        if not key or len(key) > METADATA_KEY_MAX:
            raise InvalidArgument(field, f"keys must be 1 to {METADATA_KEY_MAX} characters")
        if len(value) > METADATA_VALUE_MAX:
            raise InvalidArgument(
                f"{field}[{key[:40]}]", f"values must be at most {METADATA_VALUE_MAX} characters"
            )
        if _has_control_chars(key) or _xml_unsafe(value):
            raise InvalidArgument(field, "keys and values must not contain control characters")
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


USER_DATA_MAX = 64 * 1024
TAGS_MAX = 50
TAG_MAX = 60
NETWORKS_MAX = 16
SECURITY_GROUPS_MAX = 32
BLOCK_DEVICES_MAX = 8
BLOCK_DEVICE_MAX_GB = 1024
ADMIN_PASSWORD_MAX = 255


def check_user_data(value: str) -> str | None:
    """Base64 as the user sent it (kept for the config drive), checked to decode to at most
    64 KiB; None when empty."""
    if not value:
        return None
    if len(value) > USER_DATA_MAX * 4 // 3 + 4:
        raise InvalidArgument("user_data", f"at most {USER_DATA_MAX} bytes once decoded")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument("user_data", "must be base64") from exc
    if len(decoded) > USER_DATA_MAX:
        raise InvalidArgument(
            "user_data", f"at most {USER_DATA_MAX} bytes once decoded, got {len(decoded)}"
        )
    return value


def check_tags(tags: list[str]) -> tuple[str, ...]:
    if len(tags) > TAGS_MAX:
        raise InvalidArgument("tags", f"at most {TAGS_MAX} tags, got {len(tags)}")
    for tag in tags:
        if not tag or len(tag) > TAG_MAX or "/" in tag or "," in tag or _has_control_chars(tag):
            raise InvalidArgument("tags", f"each tag: 1 to {TAG_MAX} characters, no '/' or ','")
    return tuple(dict.fromkeys(tags))


def check_networks(networks: list[str]) -> tuple[str, ...]:
    """("auto",) by default (one NIC on the host's default network), () for "none"."""
    if not networks:
        return ("auto",)
    if "none" in networks:
        if len(networks) > 1:
            raise InvalidArgument("networks", "'none' cannot be combined with other networks")
        return ()
    if len(networks) > NETWORKS_MAX:
        raise InvalidArgument("networks", f"at most {NETWORKS_MAX} networks")
    for name in networks:
        check_name("networks", name)
    return tuple(networks)


def check_security_groups(names: list[str]) -> tuple[str, ...]:
    if len(names) > SECURITY_GROUPS_MAX:
        raise InvalidArgument("security_groups", f"at most {SECURITY_GROUPS_MAX} groups")
    return tuple(check_name("security_groups", n) for n in names) or ("default",)


def check_admin_password(value: str) -> str:
    if len(value) > ADMIN_PASSWORD_MAX or _has_control_chars(value):
        raise InvalidArgument(
            "admin_password", f"at most {ADMIN_PASSWORD_MAX} printable characters"
        )
    return value


def check_client_request_id(value: str) -> str | None:
    if not value:
        return None
    return check_name("client_request_id", value)


def check_block_devices(mappings: list[tuple[str, str, int]]) -> tuple[int, ...]:
    """(source_type, destination_type, size GiB): only blank local disks are supported, so
    what is kept is their sizes."""
    if len(mappings) > BLOCK_DEVICES_MAX:
        raise InvalidArgument("block_device_mapping", f"at most {BLOCK_DEVICES_MAX} disks")
    disks = []
    for source, destination, size in mappings:
        if source != "blank" or destination != "local":
            raise InvalidArgument(
                "block_device_mapping", "only source_type 'blank' with destination_type 'local'"
            )
        if not 1 <= size <= BLOCK_DEVICE_MAX_GB:
            raise InvalidArgument(
                "block_device_mapping.volume_size", f"must be 1 to {BLOCK_DEVICE_MAX_GB} GiB"
            )
        disks.append(size)
    return tuple(disks)
