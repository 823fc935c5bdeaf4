"""Rows a transaction loads, changes and writes back itself, off the session's unit of work.

A flush walks the session's identity map for what changed, sorts the work by mapper and
dependency, and builds each row's statement: far more Python than the few rows the
correlator changes per outcome, and paid again by every transaction when each outcome
commits alone. So the correlator detaches the rows it loads (`detach`), changes them as
any mapped object (their relationships set as loaded: nothing is loaded lazily), and
writes what changed before its commit (`write_back`): for each table, one DELETE of the
rows dropped, one INSERT of the rows made, and one UPDATE by primary key per set of
changed columns, each an executemany (one row straight on the driver's cursor on
PostgreSQL, see `_write`). As with a flush, a column is written only if its
value changed, and an attribute changed in place (a JSON document mutated) is not seen.

The rows come from `read_rows`, by a list of keys (`one_of`): on PostgreSQL straight off
the driver's cursor, without the Core result a per-transaction read pays more for than
for the query itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Delete,
    Dialect,
    Insert,
    Select,
    Table,
    Update,
    bindparam,
    delete,
    inspect,
    update,
)
from sqlalchemy.orm import Mapper, class_mapper, make_transient_to_detached
from sqlalchemy.orm.attributes import get_history, instance_dict
from sqlalchemy.sql.compiler import SQLCompiler

from router.store.tables import Base

_Row = TypeVar("_Row", bound=Base)


def detached(cls: type[_Row], values: Mapping[str, Any], **related: Base | None) -> _Row:
    """A mapped object of `values` (its row, as read with Core) as a query would have
    loaded it, in no session. Its many-to-one and one-to-one relationships given in
    `related` (the row, or None) are loaded; the others are unloaded until set as loaded
    (`set_committed_value`): one read before would raise, never load lazily."""
    row = class_mapper(cls).class_manager.new_instance()
    state = instance_dict(row)
    state.update(values)
    # Loaded as `set_committed_value` would (a scalar relationship holds its row), and
    # not expired first by `make_transient_to_detached`: half the cost per item.
    state.update(related)
    make_transient_to_detached(row)
    return row


def one_of(column: ColumnElement[Any], count: int) -> ColumnElement[bool]:
    """`column` is one of `count` keys, bound as `keyed(keys)` binds them: an IN list of
    as many parameters. Its SQL is the same for every batch of that size, so it is
    compiled and prepared once per size, and PostgreSQL plans one key as `=`. (`= ANY` of
    one array parameter, the same SQL for any size, measured dearer in `bench.cpu`: the
    correlator ~1.5 ms and PostgreSQL ~2 ms more per newborn bundle.)"""
    return column.in_(
        [bindparam(f"key_{position}", type_=column.type) for position in range(count)]
    )


def keyed(keys: Sequence[Any]) -> dict[str, Any]:
    """The parameters of `one_of(column, len(keys))`."""
    return {f"key_{position}": key for position, key in enumerate(keys)}


def read_rows(
    connection: Connection, statement: Select[Any], parameters: Mapping[str, Any]
) -> Sequence[Sequence[Any]]:
    """The rows of `statement`, each its selected columns' values in order, converted as a
    Core result would (a `UtcDateTime` comes out UTC).

    On PostgreSQL the statement's SQL (compiled once) runs on the connection's driver
    cursor, with Core's events, logging and error wrapping (`_cursor_execute`, what
    SQLAlchemy's dialects run their own side statements with), and only the columns whose
    type converts anything are converted: a Core result also builds the driver's
    description of every column and a Row per row, some 40% of the read's CPU for the
    correlator's ~49 columns. `parameters` go to the driver as they are (psycopg adapts
    a UUID key itself). Elsewhere (SQLite: most columns to convert) it is Core's
    execution."""
    if connection.dialect.name != "postgresql":
        return connection.execute(statement, parameters).all()
    on_driver = _on_driver(statement, connection.dialect)
    cursor = connection.connection.cursor()
    try:
        connection._cursor_execute(cursor, on_driver.sql, parameters)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if not on_driver.results:
        return rows
    converted = []
    for row in rows:
        values = list(row)
        for position, process in on_driver.results:
            if values[position] is not None:
                values[position] = process(values[position])
        converted.append(values)
    return converted


@dataclass(frozen=True)
class _OnDriver:
    """A statement as run on the driver's cursor: its SQL, compiled once, and the
    processors that convert values as Core would, the parameters' by name and the
    selected columns' by position (only those that convert anything)."""

    sql: str
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]
    results: tuple[tuple[int, Callable[[Any], Any]], ...]
    # Core computes, per row, the value of a column with a Python-side default (or
    # onupdate) left out of the parameters: such a statement stays with Core.
    computes_defaults: bool

    def bound(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """`parameters` converted for the driver, None included (a JSON None is JSON null)."""
        bound = dict(parameters)
        for name, process in self.binds:
            bound[name] = process(bound[name])
        return bound


@cache
def _on_driver(
    statement: Select[Any] | Insert | Update | Delete,
    dialect: Dialect,
    columns: frozenset[str] = frozenset(),
) -> _OnDriver:
    """`statement` compiled for `dialect`: an INSERT or UPDATE for the `columns` its
    parameters set, as Core compiles it for them."""
    compiled = statement.compile(dialect=dialect, column_keys=sorted(columns))
    assert isinstance(compiled, SQLCompiler)
    binds = (
        (name, bind.type.dialect_impl(dialect).bind_processor(dialect))
        for bind, name in compiled.bind_names.items()
    )
    selected = statement.selected_columns if isinstance(statement, Select) else ()
    results = (
        (position, column.type.dialect_impl(dialect).result_processor(dialect, None))
        for position, column in enumerate(selected)
    )
    return _OnDriver(
        sql=compiled.string,
        binds=tuple((name, process) for name, process in binds if process),
        results=tuple((position, process) for position, process in results if process),
        computes_defaults=bool(compiled.insert_prefetch or compiled.update_prefetch),
    )


def write_back(
    connection: Connection,
    *,
    changed: Iterable[Base] = (),
    added: Iterable[Base] = (),
    dropped: Iterable[Base] = (),
) -> None:
    """Write detached rows: delete those `dropped`, insert those `added` (made by the
    transaction), then update the columns `changed` rows changed, so a row dropped and
    made anew keeps its key. One executemany per table (and set of columns)."""
    deletes: dict[Table, list[dict[str, Any]]] = defaultdict(list)
    for row in dropped:
        mapper = inspect(row).mapper
        deletes[_table(mapper)].append(_key_of(mapper, row))
    for table, keys in deletes.items():
        _write(connection, _delete_by_key(table), keys)
    # One INSERT per table and set of columns set: a column left unset gets its default
    # (a JSON None would be stored as JSON null).
    inserts: dict[tuple[Table, frozenset[str]], list[dict[str, Any]]] = defaultdict(list)
    for row in added:
        values = set_columns(row)
        inserts[_table(inspect(row).mapper), frozenset(values)].append(values)
    for (table, _), rows in inserts.items():
        _write(connection, _insert(table), rows)
    updates: dict[tuple[Table, frozenset[str]], list[dict[str, Any]]] = defaultdict(list)
    for row in changed:
        mapper = inspect(row).mapper
        values = _changed_columns(row)
        if values:
            updates[_table(mapper), frozenset(values)].append({**values, **_key_of(mapper, row)})
    for (table, _), params in updates.items():
        _write(connection, _update_by_key(table), params)


def _write(
    connection: Connection, statement: Insert | Update | Delete, rows: list[dict[str, Any]]
) -> None:
    """Run `statement` for `rows` (parameters of the same keys).

    One row on PostgreSQL (about all the correlator writes per outcome: a bundle, an
    item, a poll) goes straight to the driver's cursor, as `read_rows` runs a read:
    Core's execution (cache key, execution context, result) costs twice the driver's own
    CPU per statement. Several rows stay Core's executemany, which psycopg sends in one
    round trip (its pipeline) that intake's items wait for; elsewhere it is Core's."""
    if connection.dialect.name == "postgresql" and len(rows) == 1:
        on_driver = _on_driver(statement, connection.dialect, frozenset(rows[0]))
        if not on_driver.computes_defaults:
            _write_on_driver(connection, on_driver, rows[0])
            return
    connection.execute(statement, rows)


def _write_on_driver(connection: Connection, on_driver: _OnDriver, row: dict[str, Any]) -> None:
    """`row` converted by the columns' bind processors, as Core converts it (a failure
    raised as Core raises it, a StatementError), then written with Core's events,
    logging and error wrapping (`_cursor_execute`)."""
    try:
        parameters = on_driver.bound(row)
    except Exception as error:
        connection._handle_dbapi_exception(error, on_driver.sql, row, None, None)
    cursor = connection.connection.cursor()
    try:
        connection._cursor_execute(cursor, on_driver.sql, parameters)
    finally:
        cursor.close()


def _changed_columns(row: Base) -> dict[str, Any]:
    """The columns set to another value since the row was loaded, with their new value."""
    state = inspect(row)
    columns = _column_keys(state.mapper)
    values = {}
    for key in state.committed_state:  # the attributes set since (to any value)
        if key in columns:
            added = get_history(row, key).added
            if added:
                values[key] = added[0]
    return values


def _table(mapper: Mapper[Any]) -> Table:
    table = mapper.local_table
    assert isinstance(table, Table)
    return table


def set_columns(row: Base) -> dict[str, Any]:
    """The columns set on a row not in a session, by its table's column keys; the others
    get their defaults."""
    state = inspect(row)
    return {
        column: state.dict[attribute]
        for attribute, column in _attribute_columns(state.mapper)
        if attribute in state.dict
    }


@cache
def _column_keys(mapper: Mapper[Any]) -> frozenset[str]:
    return frozenset(prop.key for prop in mapper.column_attrs)


@cache
def _attribute_columns(mapper: Mapper[Any]) -> tuple[tuple[str, str], ...]:
    """Each column attribute of `mapper` and the key of its table's column."""
    return tuple((attribute.key, attribute.columns[0].key) for attribute in mapper.column_attrs)


def _key_of(mapper: Mapper[Any], row: Base) -> dict[str, Any]:
    values = mapper.primary_key_from_instance(row)
    return {
        f"key_{column.key}": value for column, value in zip(mapper.primary_key, values, strict=True)
    }


@cache
def _insert(table: Table) -> Insert:
    return table.insert()


@cache
def _update_by_key(table: Table) -> Update:
    """The columns to set are the parameters' other keys."""
    return update(table).where(
        *(column == bindparam(f"key_{column.key}") for column in table.primary_key.columns)
    )


@cache
def _delete_by_key(table: Table) -> Delete:
    return delete(table).where(
        *(column == bindparam(f"key_{column.key}") for column in table.primary_key.columns)
    )
