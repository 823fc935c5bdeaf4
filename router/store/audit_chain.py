"""The audit log's hash chain: sealing, verification and pruning.

Each sealed record holds `seq` (its place in the chain), `prev_hash` (the hash of the
record before it) and `hash`, a SHA-256 over its own fields, its `seq` and `prev_hash`.
Changing a record breaks its hash; removing or reordering records breaks a `prev_hash`
or leaves a gap in `seq`; removing records from the end no longer reaches the head kept
in `audit_chain`.

Why one sealer, not chaining at insert: writers on several replicas commit in an order
no writer knows, so "read the last hash, insert after it" would fork the chain under
concurrency, and serialising every writer on one lock would put the whole router behind
it. Writers therefore insert unsealed rows cheaply (`router.store.audit.record`), and the
sealer, running in the relay role, chains them in id order of what has committed. Sealers
on several replicas take turns by locking the chain's state row with `FOR UPDATE SKIP
LOCKED` (one seals, the others skip the round); SQLite takes its write lock at BEGIN, so
there the turns are taken by the database. A record committed late (a lower id than one
already sealed) simply takes the next place: the chain's order is `seq`.

Only records the application wrote are sealed: each carries its writer's signature
(`router.store.audit.writer_mac`). A row that does not — inserted by someone with access
to the database alone, e.g. a forged, back-dated record — is marked refused
(`prev_hash = REFUSED`) and never enters the chain, and verification fails naming it.
After sealing, the chain's head is logged (`audit.head`): shipped off the machine with
the logs, or exported by `lianban audit head`, it anchors the chain outside the database,
so even rewriting the whole table and its state row is found.

Pruning keeps verifiability: the oldest records past retention are deleted only after
their part of the chain verified, and the last deleted one's `seq` and hash become the
anchor the first kept record must follow.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import structlog
from sqlalchemy import Table, bindparam, delete, func, select, text, update
from sqlalchemy.orm import Session

from contracts.errors import ChainBroken, ConfigurationError
from router.store import AuditChainRow, AuditRow, Database
from router.store.audit import canonical_json, written_by_the_application, written_fields

log = structlog.get_logger(__name__)

GENESIS_HASH = "0" * 64
"""What the first record ever sealed follows."""
REFUSED = "refused: not signed by a writer"
"""What the sealer puts in `prev_hash` of a row it will not seal."""
CHAIN_ID = 1
# 网络安全法 第二十一条: network logs are kept no less than six months; 184 days is the
# longest six calendar months.
MINIMUM_RETENTION = timedelta(days=184)
DEFAULT_RETENTION = timedelta(days=190)


SEAL_BATCH = 500
"""Records sealed in one transaction."""
_AUDIT_LOG: Table = AuditRow.__table__  # type: ignore[assignment]
_PLACE = (
    update(_AUDIT_LOG)
    .where(_AUDIT_LOG.c.id == bindparam("record"))
    .values(seq=bindparam("seq"), prev_hash=bindparam("prev"), hash=bindparam("hash"))
)
"""A record's place in the chain (or its refusal: `prev_hash = REFUSED`, no seq)."""
_PLACE_ALL = text(
    "UPDATE audit_log SET seq = place.seq, prev_hash = place.prev, hash = place.hash"
    " FROM unnest(CAST(:record AS bigint[]), CAST(:seq AS bigint[]),"
    " CAST(:prev AS text[]), CAST(:hash AS text[])) AS place(record, seq, prev, hash)"
    " WHERE audit_log.id = place.record"
)
"""`_PLACE` for a whole batch as one statement, on PostgreSQL: each parameter an array of
the batch's values. psycopg's executemany sends and binds a statement per record, and the
server runs each: a fifth of the sealer's CPU per record."""


def retention_from_days(days: int) -> timedelta:
    retention = timedelta(days=days)
    if retention < MINIMUM_RETENTION:
        raise ConfigurationError(
            f"audit retention of {days} days is below six months (网络安全法 第二十一条): "
            f"set LIANBAN_AUDIT_RETENTION_DAYS to at least {MINIMUM_RETENTION.days}"
        )
    return retention


def record_hash(row: AuditRow, seq: int, prev_hash: str) -> str:
    """The hash a record sealed at `seq` after `prev_hash` must carry."""
    return hashlib.sha256(
        canonical_json([seq, prev_hash, row.id, *written_fields(row)])
    ).hexdigest()


def _chain(session: Session, *, skip_locked: bool) -> AuditChainRow | None:
    """The chain's state row, locked for this transaction; None if another sealer holds it."""
    row = session.scalars(
        select(AuditChainRow)
        .where(AuditChainRow.id == CHAIN_ID)
        .with_for_update(skip_locked=skip_locked)
    ).first()
    if row is None and session.get(AuditChainRow, CHAIN_ID) is None:
        raise ConfigurationError("the audit chain has no state row: run the migrations")
    return row


def seal_pending(database: Database, batch_size: int = SEAL_BATCH) -> int:
    """Chain up to `batch_size` unsealed records, in id order; returns how many were
    looked at (refused ones included).

    Set-based: the records are read as plain rows and their places written back in one
    UPDATE by id (`_PLACE_ALL`; an executemany on SQLite), without the ORM's objects and
    unit of work."""
    with database.transaction() as session:
        chain = _chain(session, skip_locked=True)
        if chain is None:
            return 0
        rows = session.execute(
            select(_AUDIT_LOG)
            .where(_AUDIT_LOG.c.seq.is_(None), _AUDIT_LOG.c.prev_hash.is_(None))
            .order_by(_AUDIT_LOG.c.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return 0
        places: list[dict[str, object]] = []
        for row in rows:
            record = cast(AuditRow, row)  # a Core row has the record's attributes
            if not written_by_the_application(database.audit_key, record):
                log.error("audit.forged_record", record=row.id)
                places.append({"record": row.id, "seq": None, "prev": REFUSED, "hash": None})
                continue
            seq = chain.head_seq + 1
            sealed = record_hash(record, seq, chain.head_hash)
            places.append({"record": row.id, "seq": seq, "prev": chain.head_hash, "hash": sealed})
            chain.head_seq, chain.head_hash = seq, sealed
        _place(session, places)
        log.info("audit.head", head_seq=chain.head_seq, head_hash=chain.head_hash)
        return len(rows)


def _place(session: Session, places: list[dict[str, object]]) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_PLACE_ALL, {key: [place[key] for place in places] for key in places[0]})
    else:
        session.execute(_PLACE, places)


@dataclass(frozen=True)
class Verification:
    records: int
    """Sealed records checked."""
    unsealed: int
    """Records not sealed yet (written moments ago, or no sealer running)."""
    head_seq: int
    head_hash: str
    bad_record: int | None = None
    """The id of the first record that does not verify."""
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class Break:
    record: int | None
    """The id of the first record that does not verify; None if records are missing at
    the end."""
    problem: str


def _first_break(
    session: Session, chain: AuditChainRow, key: bytes, up_to: int | None = None
) -> Break | None:
    """Check sealed records in `seq` order from the anchor (up to `up_to`, else to the
    head), then unsealed ones; the first thing wrong, if anything is."""
    expected_seq, prev_hash = chain.anchor_seq + 1, chain.anchor_hash
    query = select(AuditRow).where(AuditRow.seq.is_not(None)).order_by(AuditRow.seq)
    if up_to is not None:
        query = query.where(AuditRow.seq <= up_to)
    for row in session.scalars(query.execution_options(yield_per=1000)):
        if row.seq != expected_seq:
            return Break(row.id, f"seq {row.seq} where {expected_seq} was expected: removed")
        if row.prev_hash != prev_hash:
            return Break(row.id, "does not follow the record before it: removed or reordered")
        if row.hash != record_hash(row, expected_seq, prev_hash):
            return Break(row.id, "its content does not match its hash: changed")
        if row.seq >= chain.signed_from_seq and not written_by_the_application(key, row):
            return Break(row.id, "not signed by a writer: inserted from outside")
        expected_seq, prev_hash = expected_seq + 1, row.hash
    last_seq, end = expected_seq - 1, chain.head_seq if up_to is None else up_to
    if last_seq != end or (up_to is None and prev_hash != chain.head_hash):
        return Break(None, f"the chain ends at seq {last_seq}, its head is seq {end}: removed")
    if up_to is None:
        for row in session.scalars(select(AuditRow).where(AuditRow.seq.is_(None))):
            if not written_by_the_application(key, row):
                return Break(row.id, "not signed by a writer: inserted from outside")
    return None


def verify(database: Database) -> Verification:
    """Check the whole chain; the first bad record, if any, with what is wrong with it."""
    with database.transaction() as session:
        chain = session.get(AuditChainRow, CHAIN_ID)
        if chain is None:
            raise ConfigurationError("the audit chain has no state row: run the migrations")
        sealed = session.scalar(select(func.count()).where(AuditRow.seq.is_not(None))) or 0
        unsealed = session.scalar(select(func.count()).where(AuditRow.seq.is_(None))) or 0
        found = _first_break(session, chain, database.audit_key)
        return Verification(
            sealed,
            unsealed,
            chain.head_seq,
            chain.head_hash,
            found.record if found else None,
            found.problem if found else None,
        )


def head(database: Database) -> dict[str, object]:
    """The chain's head as it is now, to keep outside the database (a notary, a ticket,
    another system's log): a later chain must still pass through it."""
    with database.transaction() as session:
        chain = session.get(AuditChainRow, CHAIN_ID)
        if chain is None:
            raise ConfigurationError("the audit chain has no state row: run the migrations")
        return {
            "head_seq": chain.head_seq,
            "head_hash": chain.head_hash,
            "at": datetime.now(UTC).isoformat(),
        }


def prune(database: Database, retention: timedelta, now: datetime | None = None) -> int:
    """Delete the oldest sealed records older than `retention`, keeping the chain
    verifiable from the new anchor; returns how many were deleted."""
    cutoff = (now or datetime.now(UTC)) - retention
    with database.transaction() as session:
        chain = _chain(session, skip_locked=False)
        assert chain is not None
        # The chain is cut before the first record still within retention: every record
        # before it is older (records are sealed roughly, not strictly, in time order).
        first_kept = session.scalar(
            select(func.min(AuditRow.seq)).where(AuditRow.seq.is_not(None), AuditRow.at >= cutoff)
        )
        last_pruned = chain.head_seq if first_kept is None else first_kept - 1
        if last_pruned <= chain.anchor_seq:
            return 0
        found = _first_break(session, chain, database.audit_key, up_to=last_pruned)
        if found is not None:
            raise ChainBroken(
                f"not pruning records that do not verify: record {found.record}: {found.problem}"
            )
        anchor = session.scalars(select(AuditRow).where(AuditRow.seq == last_pruned)).one()
        assert anchor.hash is not None
        deleted = last_pruned - chain.anchor_seq  # every one of them just verified
        session.execute(
            delete(AuditRow).where(AuditRow.seq.is_not(None), AuditRow.seq <= last_pruned)
        )
        chain.anchor_seq, chain.anchor_hash, chain.anchored_at = last_pruned, anchor.hash, cutoff
        log.info("audit.pruned", records=deleted, anchor_seq=last_pruned)
        return deleted


class AuditSealer:
    """The relay role's thread: seals new records as they come, prunes once an hour."""

    def __init__(
        self,
        database: Database,
        retention: timedelta = DEFAULT_RETENTION,
        *,
        every_seconds: float = 1.0,
        prune_every: timedelta = timedelta(hours=1),
    ) -> None:
        self._database = database
        self._retention = retention
        self._every_seconds = every_seconds
        self._prune_every = prune_every
        self._pruned_at: datetime | None = None

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                # A batch that was not full left nothing to seal: no empty round after it.
                while seal_pending(self._database) == SEAL_BATCH:
                    pass
                now = datetime.now(UTC)
                if self._pruned_at is None or now - self._pruned_at >= self._prune_every:
                    prune(self._database, self._retention, now)
                    self._pruned_at = now
            except ChainBroken as error:
                log.error("audit.chain_broken", error=str(error))
            except Exception as error:  # the database is away: records wait, unsealed
                log.warning("audit.seal_failed", error=repr(error))
            stop.wait(self._every_seconds)
