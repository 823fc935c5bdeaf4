"""Fills the database with finished bundles in a few set-based statements (growth (b)).

Each finished newborn bundle gets its row (its case number is the intake's unique key;
every row carries the same sample application), its five approved items, its reply,
and one row in each of the tables intake and correlation insert into by a unique key or
look up: inbox (outcome message ids), outbox (message ids) and events. A real bundle
leaves about 7 inbox, 8 outbox and 18 event rows; one each keeps the fill inside the
benchmark's time budget (see bench/README.md). Rows go in sorted by their index key, and
foreign keys are not checked while filling (the session runs as a replica), which is
what makes millions of rows take seconds rather than hours.
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
        _fill_batch(connection, template, items, first, min(first + BATCH, count))


def _settle(engine: Engine) -> None:
    """Leave the database as a history of a million bundles would be, not as one loaded
    seconds ago: vacuumed and analysed, and the fill's gigabytes of WAL checkpointed. The
    checkpoint would otherwise be written during (b)'s measurement, by the fill, not by
    Lianban (the bench connects as a superuser)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
        connection.execute(text("CHECKPOINT"))


def _fill_batch(
    connection: Any, template: dict[str, Any], items: list[str], first: int, last: int
) -> None:
    connection.execute(text("SET LOCAL session_replication_role = replica"))
    connection.execute(text("SET LOCAL synchronous_commit = off"))
    connection.execute(
        text(
            "CREATE TEMP TABLE bench_filled ON COMMIT DROP AS "
            "SELECT gen_random_uuid() AS id, 'F-' || lpad(n::text, 9, '0') AS project_no, "
            "now() - make_interval(secs => n) AS at "
            "FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n "
            "ORDER BY id"
        ),
        {"first": first, "last": last - 1},
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
        "(SELECT gen_random_uuid()::text AS message_id, id, at FROM bench_filled) AS sent "
        "ORDER BY message_id",
        "INSERT INTO replies (bundle_id, version, body, created_at) "
        'SELECT id, 1, \'{"outcome": "all_approved"}\'::jsonb, at FROM bench_filled',
    ):
        connection.execute(text(statement))
