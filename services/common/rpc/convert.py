"""Shared proto <-> domain conversions (timestamps, enums)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2


def to_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def from_timestamp(ts: timestamp_pb2.Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)
