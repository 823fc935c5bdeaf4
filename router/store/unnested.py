"""Many rows in one INSERT on PostgreSQL with one parameter per column, not per value.

A multi-row INSERT … VALUES has a parameter for every value, and psycopg caches the
conversion of a statement's placeholders only up to 50 of them: a larger one (a newborn
bundle's 12 timeline steps are 72 values) is parsed by a regular expression again on
every execute. `INSERT INTO t (a, b) SELECT unnest(:a), unnest(:b)` takes an array per
column instead: as many parameters as columns, whatever the rows.

Only for rows of plain values: psycopg writes an array as text, quoting and escaping
each element with regular expressions, which a JSON document or bytes pay in full
(measured: a newborn bundle's 5 items, clocks as JSON, cost more as arrays than as an
executemany; its 12 timeline steps far less than as a VALUES list).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import JSON, Connection, Insert, LargeBinary, Table, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.expression import bindparam


def unnests(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> bool:
    """Whether `rows` go as arrays: on PostgreSQL, when there are several (one row's
    VALUES has no more parameters than columns already) and they set no document."""
    return (
        len(rows) > 1
        and connection.dialect.name == "postgresql"
        and not any(_holds_documents(table, column) for column in rows[0])
    )


def unnested_insert(table: Table, rows: Sequence[dict[str, Any]]) -> tuple[Insert, dict[str, Any]]:
    """The INSERT of `rows` (each with the same keys, those of the columns they set) into
    `table`, and its parameters: each column's values as one array, in the rows' order."""
    columns = tuple(rows[0])
    return _insert_of_arrays(table, columns), {
        column: [row[column] for row in rows] for column in columns
    }


@cache
def _holds_documents(table: Table, column: str) -> bool:
    return isinstance(table.c[column].type, JSON | LargeBinary)


@cache
def _insert_of_arrays(table: Table, columns: tuple[str, ...]) -> Insert:
    """Set-returning functions in a select list advance together, so row i takes each
    array's element i, and the rows are inserted in that order (a serial key follows
    it). Each element is bound as its column binds it (a UTC time checked)."""
    arrays = {column: ARRAY(table.c[column].type) for column in columns}
    unnested = (
        func.unnest(cast(bindparam(column, type_=array), array)) for column, array in arrays.items()
    )
    return table.insert().from_select(columns, select(*unnested))
