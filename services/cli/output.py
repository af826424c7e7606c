"""How novactl shows results: ``-o table|wide|value|json|yaml``, ``-c COLUMN``, ``--sort``.

JSON and YAML always carry every field of the resource: fields at their default value are
printed, and an unset message field (a server's ``fault``, ``launched_at``) is ``null``, so
that two servers always have the same keys.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import yaml
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from services.cli.errors import CliError


class Format(enum.Enum):
    TABLE = "table"
    WIDE = "wide"
    VALUE = "value"
    JSON = "json"
    YAML = "yaml"


FORMATS = tuple(f.value for f in Format)


@dataclass(frozen=True, kw_only=True)
class SortKey:
    column: str
    descending: bool = False

    @classmethod
    def parse(cls, text: str) -> SortKey:
        """``name``, ``name:asc`` or ``name:desc`` (kubectl's --sort-by, openstack's -f)."""
        column, _, direction = text.partition(":")
        if direction not in ("", "asc", "desc"):
            raise CliError(f"--sort {text!r}: direction must be asc or desc")
        return cls(column=column, descending=direction == "desc")


@dataclass(frozen=True, kw_only=True)
class View:
    """What the user asked to see; built once from the global options."""

    format: Format = Format.TABLE
    columns: tuple[str, ...] = ()
    sort: tuple[SortKey, ...] = ()

    @property
    def structured(self) -> bool:
        return self.format in (Format.JSON, Format.YAML)


def to_dict(message: Message) -> dict[str, Any]:
    """Every field of ``message``, by its proto name; unset message fields are None."""
    data = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _fill(message, data)


def enum_prefix(enum_name: str) -> str:
    """``PowerState`` -> ``POWER_STATE_``: the prefix every value of the enum carries."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum_name).upper() + "_"


# Zero values that mean something to Nova users under their Nova name.
_ZERO_NAMES = {"PowerState": "NOSTATE"}


def short_name(enum_type: Any, number: int) -> str:
    """An enum value as users know it: ``ACTIVE``, not ``SERVER_STATUS_ACTIVE``
    (``enum_type``: an EnumDescriptor, of either protobuf implementation)."""
    if number == 0 and enum_type.name in _ZERO_NAMES:
        return _ZERO_NAMES[enum_type.name]
    value = enum_type.values_by_number.get(number)
    if value is None:
        return str(number)  # a value newer than this novactl
    return str(value.name).removeprefix(enum_prefix(str(enum_type.name)))


def _fill(message: Message, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` completed, in the order the fields are declared (``show`` lists them so)."""
    for field in message.DESCRIPTOR.fields:
        if field.name not in data:
            data[field.name] = None
            continue
        if field.enum_type is not None:
            # novactl shows values without the type prefix the API needs (AIP-126), as Nova and
            # openstackclient show them; -o json is novactl's view, not the API's JSON mapping.
            value = getattr(message, field.name)
            if field.is_repeated:
                data[field.name] = [short_name(field.enum_type, v) for v in value]
            else:
                data[field.name] = short_name(field.enum_type, value)
            continue
        kind = field.message_type
        if kind is None or kind.full_name.startswith("google.protobuf."):
            continue
        if kind.GetOptions().map_entry:
            continue
        value = getattr(message, field.name)
        if field.is_repeated:
            data[field.name] = [
                _fill(item, item_data)
                for item, item_data in zip(value, data[field.name], strict=True)
            ]
        else:
            data[field.name] = _fill(value, data[field.name])
    return {field.name: data[field.name] for field in message.DESCRIPTOR.fields}


def emit(record: Mapping[str, Any], view: View, out: TextIO) -> None:
    """Show one resource: ``key  value`` lines, one value a line, or the whole of it."""
    chosen = _select(record, view.columns)
    if view.structured:
        _dump(chosen, view.format, out)
    elif view.format == Format.VALUE:
        for value in chosen.values():
            out.write(_cell(value) + "\n")
    else:
        width = max((len(k) for k in chosen), default=0)
        for key, value in chosen.items():
            out.write(f"{key.ljust(width)}  {_cell(value)}\n".rstrip() + "\n")


def show_many(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], view: View, *, out: TextIO
) -> None:
    """Show a list: a table of ``columns`` (or of every field with ``-o wide``), bare values,
    or every field of every row in JSON or YAML."""
    ordered = sort_rows(rows, view.sort)
    if view.structured:
        _dump([_select(r, view.columns) for r in ordered], view.format, out)
        return
    shown = list(view.columns) or _wide(ordered, columns, view.format)
    _check_columns(shown, ordered, columns)
    if view.format == Format.VALUE:
        for row in ordered:
            out.write(" ".join(_cell(row.get(c)) for c in shown).rstrip() + "\n")
    else:
        print_table(ordered, shown, out)


def _wide(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: Format) -> list[str]:
    if fmt != Format.WIDE:
        return list(columns)
    extra: dict[str, None] = {}
    for row in rows:
        extra.update(dict.fromkeys(k for k in row if k not in columns))
    return [*columns, *extra]


def _check_columns(
    shown: Sequence[str], rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> None:
    known = set(columns).union(*(r.keys() for r in rows))
    unknown = [c for c in shown if c not in known]
    if unknown and rows:
        raise CliError(f"-c {unknown[0]!r}: no such column (columns: {', '.join(sorted(known))})")


def _select(record: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    if not columns:
        return dict(record)
    unknown = [c for c in columns if c not in record]
    if unknown:
        raise CliError(f"-c {unknown[0]!r}: no such column (columns: {', '.join(sorted(record))})")
    return {c: record[c] for c in columns}


def sort_rows(
    rows: Sequence[Mapping[str, Any]], keys: Sequence[SortKey]
) -> list[Mapping[str, Any]]:
    ordered = list(rows)
    for key in reversed(keys):  # stable sorts, last key first, give a multi-key order
        if ordered and all(key.column not in r for r in ordered):
            raise CliError(f"--sort {key.column!r}: no such column")
        ordered.sort(key=lambda r, c=key.column: _sort_value(r.get(c)),  # type: ignore[misc]
                     reverse=key.descending)  # fmt: skip
    return ordered


def _sort_value(value: Any) -> tuple[int, float, str]:
    """Numbers (int64 fields arrive as strings in proto JSON) by value, then text; empty last."""
    if value is None or value == "":
        return (2, 0.0, "")
    if isinstance(value, bool):
        return (1, 0.0, str(value))
    if isinstance(value, int | float):
        return (0, float(value), "")
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _dump(data: Any, fmt: Format, out: TextIO) -> None:
    if fmt == Format.JSON:
        out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        out.write(yaml.safe_dump(data, sort_keys=True, default_flow_style=False))


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out.write(line([c.upper() for c in columns]) + "\n")
    for row in cells:
        out.write(line(row) + "\n")
