"""Table and JSON rendering for novactl."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message


def to_dict(message: Message, *, defaults: bool = False) -> dict[str, Any]:
    return MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=defaults
    )


def emit(data: Any, output: str, out: TextIO) -> None:
    """Show one record: JSON for ``-o json``, else ``key  value`` lines."""
    if output == "json":
        out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        print_record(data, out)


def show_many(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], output: str, out: TextIO
) -> None:
    """Show a list: JSON for ``-o json`` (every field), else a table of ``columns``."""
    if output == "json":
        emit(rows, "json", out)
    else:
        print_table(rows, columns, out)


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out.write(line([c.upper() for c in columns]) + "\n")
    for row in cells:
        out.write(line(row) + "\n")


def print_record(record: Mapping[str, Any], out: TextIO) -> None:
    width = max((len(k) for k in record), default=0)
    for key, value in record.items():
        shown = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value
        out.write(f"{key.ljust(width)}  {shown}\n")
