"""Many rows into one table at the cost of the rows, not of SQLAlchemy's per-row machinery.

A create of 100 servers writes ~400 rows while it holds SQLite's one write lock, and every
other project's create waits for that lock. Through ``connection.execute(table.insert(),
rows)`` each row went through parameter construction and every column's bind processor
(JSON encoding, datetime conversion): measured, that was most of the transaction's time.

Here each column's processor runs once per distinct value *object* in a column (the servers
of one create share their metadata, groups, spec and timestamp objects), and the rows go to
the driver's ``executemany`` as plain tuples or dicts. The processors are the columns' own
(``TypeEngine.bind_processor``), so what is stored is exactly what ``execute`` would store.

SQLite only: there the writer's lock is what other projects wait for. PostgreSQL locks rows,
not the database, and its driver adapts JSON and casts itself, so rows go through
``execute`` there as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.engine import Dialect

_Processor = Callable[[Any], Any] | None


@functools.lru_cache(maxsize=64)
def _statement(
    table: Table, columns: tuple[str, ...], dialect: Dialect
) -> tuple[str, tuple[str, ...], tuple[_Processor, ...]]:
    compiled = table.insert().compile(dialect=dialect, column_keys=list(columns))
    # sqlite3's "?" parameters are positional: each row is a tuple in the compiled order.
    order = tuple(compiled.positiontup or columns)
    # The dialect's own form of each type (e.g. SQLite's DATETIME renders text itself).
    processors = tuple(
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
    )
    return str(compiled), order, processors


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT ``rows`` (all with the same keys, each a column of ``table``) in one
    ``executemany``."""
    if not rows:
        return
    if connection.dialect.name != "sqlite":
        connection.execute(table.insert(), rows)
        return
    columns = tuple(rows[0])
    sql, order, processors = _statement(table, columns, connection.dialect)
    processed = [
        _column_values(rows, name, processor)
        for name, processor in zip(columns, processors, strict=True)
    ]
    by_name = dict(zip(columns, processed, strict=True))
    connection.exec_driver_sql(sql, list(zip(*(by_name[name] for name in order), strict=True)))


def _column_values(
    rows: Sequence[Mapping[str, Any]], name: str, processor: _Processor
) -> list[Any]:
    if processor is None:
        return [row[name] for row in rows]
    values: list[Any] = []
    last: object = _NOTHING
    last_out: Any = None
    for row in rows:
        value = row[name]
        if value is not last:  # rows of one create share the object: process it once
            last, last_out = value, processor(value)
        values.append(last_out)
    return values


_NOTHING = object()
