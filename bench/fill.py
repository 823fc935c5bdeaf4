"""Fills the database with finished bundles in a few set-based statements (growth (b)).

Each finished newborn bundle gets its row (its case number is the intake's unique key;
every row carries the same sample application), its five approved items, its reply,
and one row in each of the tables intake and correlation insert into by a unique key or
look up: inbox (outcome message ids), outbox (message ids) and events. A real bundle
leaves about 7 inbox, 8 outbox and 18 event rows; one each keeps the fill inside the
benchmark's time budget (see bench/README.md). Rows go in sorted by their index key, and
foreign keys are not checked while filling (the session runs as a replica), which is
what makes millions of rows take seconds rather than hours.

Bundle and message ids are time-ordered (version 7) as of each bundle's time, as Lianban
makes them (contracts.ids), so the live bundles' keys follow the filled ones in every
index as they would after a million real bundles; the outcome message ids in the inbox
are the departments' own, and stay random.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from sqlalchemy import Engine, text

from bench.environment import retrying
from contracts.catalog import BundleType
from contracts.samples import sample_application

BATCH = 250_000  # bundles per statement, so each transaction stays a manageable size

# A version 7 UUID of the time `at` (PostgreSQL 15 has no uuidv7()): the milliseconds
# since the epoch in the first 48 bits, then "7" and the rest of a random UUID, whose
# variant bits are already those of RFC 9562.
_TIME_ORDERED_ID = (
    "CAST(overlay(lpad(to_hex(CAST(floor(extract(epoch FROM at) * 1000) AS bigint)), 12, '0') "
    "placing '-' from 9 for 0) || '-7' || substr(gen_random_uuid()::text, 16) AS uuid)"
)


def fill_finished_bundles(
    engine: Engine, bundle_type: BundleType, items: list[str], count: int
) -> None:
    template = sample_application(bundle_type, "F", items)
    for first in range(0, count, BATCH):
        retrying(partial(_fill_transaction, engine, template, items, first, count))
    retrying(lambda: _settle(engine))


def _fill_transaction(
    engine: Engine, template: dict[str, Any], items: list[str], first: int, count: int
) -> None:
    with engine.begin() as connection:
        _fill_batch(connection, template, items, first, min(first + BATCH, count), count)


def _settle(engine: Engine) -> None:
    """Leave the database as a history of a million bundles would be, not as one loaded
    seconds ago: vacuumed and analysed, and the fill's gigabytes of WAL checkpointed. The
    checkpoint would otherwise be written during (b)'s measurement, by the fill, not by
    Lianban (the bench connects as a superuser)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
        connection.execute(text("CHECKPOINT"))


def _fill_batch(
    connection: Any, template: dict[str, Any], items: list[str], first: int, last: int, count: int
) -> None:
    """Bundles `first` to `last` - 1 of `count`, one a second, the last a second ago: each
    batch is newer than the one before, so its time-ordered keys go in after them."""
    connection.execute(text("SET LOCAL session_replication_role = replica"))
    connection.execute(text("SET LOCAL synchronous_commit = off"))
    connection.execute(
        text(
            "CREATE TEMP TABLE bench_filled ON COMMIT DROP AS "
            f"SELECT {_TIME_ORDERED_ID} AS id, project_no, at FROM "
            "(SELECT 'F-' || lpad(n::text, 9, '0') AS project_no, "
            "now() - make_interval(secs => CAST(:count AS integer) - n) AS at "
            "FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n) "
            "AS finished ORDER BY id"
        ),
        {"first": first, "last": last - 1, "count": count},
    )
    connection.execute(
        text(
            "INSERT INTO bundles (id, project_no, bundle_type, state, application, "
            "received_at, replied_at) "
            "SELECT id, project_no, :bundle_type, 'replied', CAST(:application AS jsonb), "
            "at, at + interval '2 seconds' FROM bench_filled"
        ),
        {"bundle_type": template["bundle_type"], "application": json.dumps(template)},
    )
    connection.execute(
        text(
            "INSERT INTO items (bundle_id, code, position, service, department, name_zh, "
            "state, dispatch_id, receipt_no, awaiting_prerequisites, updated_at) "
            "SELECT b.id, code, position - 1, code, 'bench', code, 'approved', "
            "NULL, NULL, false, b.at "
            "FROM bench_filled b, "
            "unnest(CAST(:codes AS text[])) WITH ORDINALITY AS c(code, position) "
            "ORDER BY b.id, code"
        ),
        {"codes": items},
    )
    for statement in (
        "INSERT INTO events (bundle_id, item, state, detail, actor, at) "
        "SELECT id, NULL, 'replied', 'all_approved', 'router', at FROM bench_filled",
        "INSERT INTO inbox (message_id, bundle_id, processed_at) "
        "SELECT message_id, id, at FROM "
        "(SELECT gen_random_uuid()::text AS message_id, id, at FROM bench_filled) AS applied "
        "ORDER BY message_id",
        "INSERT INTO outbox (exchange, routing_key, message_id, correlation_id, body, "
        "created_at, sent_at) "
        "SELECT 'lianban.replies', 'reply.newborn', message_id, id::text, '\\x7b7d'::bytea, "
        "at, at FROM "
        f"(SELECT {_TIME_ORDERED_ID}::text AS message_id, id, at FROM bench_filled) AS sent "
        "ORDER BY message_id",
        "INSERT INTO replies (bundle_id, version, body, created_at) "
        'SELECT id, 1, \'{"outcome": "all_approved"}\'::jsonb, at FROM bench_filled',
    ):
        connection.execute(text(statement))
