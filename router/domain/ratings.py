"""好差评: the platform posts the applicant's rating of a replied bundle, once.

The rating covers the bundle and, optionally, each department that handled one of its
items, on the five national levels (`contracts.api.Satisfaction`). It is posted once per
bundle: the national rules give one evaluation per handling (一事一评), and a second
post is a 409, never an overwrite; what follows a 差评 is the department's rectification
and reply (`router.domain.rectifications`), not a new rating.

A 差评 (不满意 or 非常不满意) opens 整改 for the department it is about; a 差评 of the
bundle as a whole is about its lead department (牵头部门), which answers for the bundle
(001: "各市级牵头部门具体负责牵头“一件事”的组织推进、实施运行"). A department rated
badly both ways gets one rectification.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts.api import (
    BundleState,
    DepartmentEvaluation,
    Evaluation,
    Rating,
    RatingRecord,
    Satisfaction,
    TimelineEvent,
)
from contracts.catalog import Catalog
from router.domain.catalogs import CatalogShelf, shelf_of
from router.domain.rectifications import open_rectification, rectifications
from router.domain.workdays import WorkingCalendar
from router.store import BundleRow, Database, RatingRow, audit
from router.store.timeline import Actor, record_event

BUNDLE = ""  # the `department` of the bundle's own rating row


@dataclass(frozen=True)
class Rated:
    record: RatingRecord


@dataclass(frozen=True)
class NotRated:
    """Why the rating was refused; `reason` names it in English."""

    reason: str
    detail: str


UNKNOWN_BUNDLE, NOT_REPLIED, ALREADY_RATED, NOT_IN_BUNDLE = (
    "unknown_bundle",
    "not_replied",
    "already_rated",
    "department_not_in_bundle",
)


def rate(
    database: Database,
    catalogs: Catalog | CatalogShelf,
    bundle_id: uuid.UUID,
    rating: Rating,
    *,
    actor: str,
    at: datetime,
    calendar: WorkingCalendar,
    rectification_days: int,
) -> Rated | NotRated:
    """Store the rating and open a rectification for each department rated 差评."""
    try:
        with database.transaction() as session:
            bundle = session.get(BundleRow, bundle_id, with_for_update=True)
            refusal = _refusal(session, bundle, rating)
            if refusal is not None:
                return refusal
            assert bundle is not None
            _store(session, bundle, rating, actor, at)
            catalog = shelf_of(catalogs).for_bundle(bundle)
            for department, evaluation in _bad_by_department(catalog, bundle, rating).items():
                open_rectification(
                    session,
                    bundle,
                    department,
                    evaluation.level,
                    evaluation.comment,
                    calendar=calendar,
                    working_days=rectification_days,
                    at=at,
                )
    except IntegrityError:  # another post for the same bundle committed first
        return NotRated(ALREADY_RATED, f"bundle {bundle_id} is rated already")
    with database.transaction() as session:
        record = rating_record(session, bundle_id, at)
    assert record is not None
    return Rated(record)


def _refusal(session: Session, bundle: BundleRow | None, rating: Rating) -> NotRated | None:
    if bundle is None:
        return NotRated(UNKNOWN_BUNDLE, "no such bundle")
    if bundle.state != BundleState.REPLIED:
        return NotRated(NOT_REPLIED, "a bundle is rated after its reply; it is still in progress")
    exists = select(RatingRow.id).where(RatingRow.bundle_id == bundle.id)
    if session.scalar(exists.limit(1)) is not None:
        return NotRated(ALREADY_RATED, f"bundle {bundle.id} is rated already: once per bundle")
    handled = {item.department for item in bundle.items}
    named = [evaluation.department for evaluation in rating.departments]
    strangers = sorted({code for code in named if code not in handled})
    if strangers:
        return NotRated(
            NOT_IN_BUNDLE,
            f"no item of this bundle went to {', '.join(strangers)}; "
            f"its departments are {', '.join(sorted(handled))}",
        )
    return None


def _store(session: Session, bundle: BundleRow, rating: Rating, actor: str, at: datetime) -> None:
    evaluations: list[tuple[str, Evaluation]] = [(BUNDLE, rating)]
    evaluations += [(evaluation.department, evaluation) for evaluation in rating.departments]
    for department, evaluation in evaluations:
        session.add(
            RatingRow(
                bundle_id=bundle.id,
                department=department,
                level=evaluation.level,
                reasons=list(evaluation.reasons),
                comment=evaluation.comment,
                rated_at=at,
            )
        )
    # Flushed here, so a racing post fails on the unique index inside this transaction.
    session.flush()
    levels = ", ".join(
        f"{department or 'bundle'} {e.level.name_zh}" for department, e in evaluations
    )
    record_event(session, bundle.id, None, TimelineEvent.RATED, levels, actor=Actor.PLATFORM, at=at)
    audit.record(
        session,
        actor=actor,
        event=audit.AuditEvent.RATED,
        outcome=rating.level.name_zh,
        bundle_id=bundle.id,
        detail=levels,
    )


def _bad_by_department(
    catalog: Catalog, bundle: BundleRow, rating: Rating
) -> dict[str, Evaluation]:
    """The departments a 差评 is about, each with the worst such rating of it."""
    bad: dict[str, Evaluation] = {}
    lead = catalog.bundle_types[bundle.bundle_type].lead_department
    candidates: list[tuple[str, Evaluation]] = [(lead, rating)]
    candidates += [(evaluation.department, evaluation) for evaluation in rating.departments]
    for department, evaluation in candidates:
        if evaluation.level.is_bad and (
            department not in bad or evaluation.level < bad[department].level
        ):
            bad[department] = evaluation
    return bad


def rating_record(session: Session, bundle_id: uuid.UUID, now: datetime) -> RatingRecord | None:
    rows = session.scalars(select(RatingRow).where(RatingRow.bundle_id == bundle_id)).all()
    own = next((row for row in rows if row.department == BUNDLE), None)
    bundle = session.get(BundleRow, bundle_id)
    if own is None or bundle is None:
        return None
    return RatingRecord(
        bundle_id=bundle_id,
        project_no=bundle.project_no,
        rated_at=own.rated_at,
        level=Satisfaction(own.level),
        level_zh=Satisfaction(own.level).name_zh,
        reasons=tuple(own.reasons),
        comment=own.comment,
        departments=tuple(
            DepartmentEvaluation(
                department=row.department,
                level=Satisfaction(row.level),
                reasons=tuple(row.reasons),
                comment=row.comment,
            )
            for row in sorted(rows, key=lambda row: row.department)
            if row.department != BUNDLE
        ),
        rectifications=tuple(rectifications(session, now, bundle_id=bundle_id)),
    )
