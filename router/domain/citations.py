"""免提交: the licences and earlier results an application cites, verified at intake.

Each cited licence (`LicenceCitation`) is looked up in the certificate library
(电子证照库): it must exist, be held by the applicant (an agent applies with the
applicant's licences, never their own) and be neither revoked nor expired. Each cited
prior result (`PriorResult`) must stand for a prerequisite of a selected item, and be
either an approval of that item's service Lianban recorded for the same applicant (by
case number) or the licence that service issues. What fails is a problem of the
one-time notice, with everything else wrong with the application. What verifies is
fetched by reference into the material store, so departments receive it as they
receive an upload, and the prior results are forwarded to the dependent's department
as a prerequisite's results are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import select

from contracts.api import Problem
from contracts.application import MaterialRef
from contracts.catalog import BundleType, Catalog
from contracts.errors import CertificateLibraryUnavailable, MaterialRejected
from contracts.licences import (
    LICENCE_TYPES,
    RESULT_LICENCE_TYPES,
    LicenceCitation,
    LicenceRecord,
    PriorResult,
)
from contracts.messages import Certificate, ItemState, PrerequisiteResult
from router.domain.applicant_rules import holder_of, rule_for, rule_waived
from router.domain.evidence import Evidence, FetchedLicence
from router.domain.progress import certificates_of
from router.store import BundleRow, Database
from runtime import clock
from runtime.storage import MaterialStore


class LicenceSource(Protocol):
    """The router's port to a certificate library (`adapters.certificates` implements it);
    every method may raise CertificateLibraryUnavailable."""

    def lookup_all(self, keys: Sequence[tuple[str, str]]) -> list[LicenceRecord | None]: ...
    def held_by(self, holder_id: str, type_code: str) -> list[LicenceRecord]: ...
    def download_all(self, records: Sequence[LicenceRecord]) -> list[bytes]: ...


@dataclass(frozen=True)
class _Wanted:
    """A licence to look up, and where in the application it was cited (None: looked up
    by holder for an applicant rule)."""

    pointer: str
    citation: LicenceCitation
    prior: PriorResult | None = None
    department: str = ""  # of the prerequisite a cited certificate stands for


@dataclass(frozen=True)
class Verified:
    """The citations that verified, not yet fetched."""

    licences: tuple[tuple[_Wanted, LicenceRecord], ...] = ()
    prior_results: tuple[PrerequisiteResult, ...] = ()

    @property
    def types(self) -> frozenset[str]:
        """The licence types that verified and stand in for uploads (the materials check
        takes them)."""
        return frozenset(record.type_code for want, record in self.licences if want.prior is None)


class Citations:
    """Verifies an application's citations; `library` None: no library is configured, so
    a cited licence cannot be verified (a problem), and applicant rules check the
    applicant's type only."""

    def __init__(
        self,
        database: Database,
        materials: MaterialStore,
        library: LicenceSource | None = None,
    ) -> None:
        self._database = database
        self._materials = materials
        self._library = library

    def verify(self, raw: Any, catalog: Catalog) -> tuple[Verified, list[Problem]]:
        """What of `raw`'s citations (a posted application) verified, and every problem
        with the rest; `catalog` is the view of the application's area."""
        if not isinstance(raw, dict):
            return Verified(), []
        holder = holder_of(raw.get("applicant"))
        bundle_type = catalog.bundle_types.get(str(raw.get("bundle_type")))
        wanted = [
            _Wanted(pointer, citation)
            for pointer, citation in _parsed(raw.get("licences"), LicenceCitation, "/licences")
        ]
        problems: list[Problem] = []
        priors: list[PrerequisiteResult] = []
        for pointer, prior in _parsed(raw.get("prior_results"), PriorResult, "/prior_results"):
            if bundle_type is None:
                continue
            problem = _prior_problem(bundle_type, raw.get("items"), prior, pointer)
            if problem is not None:
                problems.append(problem)
            elif prior.certificate is not None:
                department = bundle_type.item(prior.item).department
                wanted.append(_Wanted(pointer, prior.certificate, prior, department))
            else:
                found = self._recorded_result(bundle_type, prior, holder, pointer)
                if isinstance(found, Problem):
                    problems.append(found)
                else:
                    priors.append(found)
        records, library_problems = self._verify(wanted, holder, _agent_id(raw.get("agent")))
        problems.extend(library_problems)
        rule_records, rule_problems = self._applicant_rule(
            raw, catalog, bundle_type, holder, records
        )
        problems.extend(rule_problems)
        return Verified((*records, *rule_records), tuple(priors)), problems

    def _verify(
        self, wanted: list[_Wanted], holder: str | None, agent_id: str | None
    ) -> tuple[list[tuple[_Wanted, LicenceRecord]], list[Problem]]:
        if not wanted:
            return [], []
        if self._library is None:
            return [], [_unverifiable(w, configured=False) for w in wanted]
        try:
            found = self._library.lookup_all([w.citation.key for w in wanted])
        except CertificateLibraryUnavailable:
            return [], [_unverifiable(w, configured=True) for w in wanted]
        today = clock.now().date()
        verified, problems = [], []
        for want, record in zip(wanted, found, strict=True):
            problem = _licence_problem(want, record, holder, agent_id, today)
            if problem is not None:
                problems.append(problem)
            elif record is not None:
                verified.append((want, record))
        return verified, problems

    def _applicant_rule(
        self,
        raw: dict[str, Any],
        catalog: Catalog,
        bundle_type: BundleType | None,
        holder: str | None,
        verified: list[tuple[_Wanted, LicenceRecord]],
    ) -> tuple[list[tuple[_Wanted, LicenceRecord]], list[Problem]]:
        """共享数据: a licence an applicant rule requires, not cited, is asked of the
        library by holder; the type checks are `applicant_rules.applicant_problems`'."""
        rule = rule_for(catalog, bundle_type)
        applicant = raw.get("applicant")
        kind = applicant.get("applicant_type") if isinstance(applicant, dict) else None
        if (
            bundle_type is None
            or rule is None
            or rule.licence is None
            or kind not in rule.applicant_types  # refused on its type already
            or holder is None
            or self._library is None
        ):
            return [], []
        if rule_waived(bundle_type, rule, raw.get("items")) or any(
            record.type_code == rule.licence for _want, record in verified
        ):
            return [], []
        try:
            held = self._library.held_by(holder, rule.licence)
        except CertificateLibraryUnavailable:
            held = []
        today = clock.now().date()
        valid = [record for record in held if not record.lapsed(today)]
        if not valid:
            name = LICENCE_TYPES[rule.licence]
            return [], [
                Problem(
                    pointer="/applicant",
                    code="applicant_licence_missing",
                    message_zh=f"未能核验到申请人有效的{name}：{rule.basis}",
                    message_en=f"no valid {rule.licence} of the applicant could be verified: "
                    f"{rule.basis_en}",
                )
            ]
        record = valid[0]
        citation = LicenceCitation(
            type_code=record.type_code, number=record.number, holder_id=holder
        )
        return [(_Wanted("/applicant", citation), record)], []

    def _recorded_result(
        self, bundle_type: BundleType, prior: PriorResult, holder: str | None, pointer: str
    ) -> PrerequisiteResult | Problem:
        """An approval Lianban itself recorded: the earlier bundle with the case number,
        the same applicant, and the prerequisite's service approved in it."""
        service = bundle_type.item(prior.item).service
        with self._database.transaction() as session:
            earlier = session.scalar(
                select(BundleRow).where(BundleRow.project_no == prior.project_no)
            )
            if earlier is None or holder_of(earlier.application.get("applicant")) != holder:
                return _problem(
                    pointer + "/project_no",
                    "prior_result_not_found",
                    f"未找到申请人名下办件编号为{prior.project_no}的办件",
                    f"the applicant has no earlier application {prior.project_no}",
                )
            for row in earlier.items:
                if row.service == service and row.state == ItemState.APPROVED:
                    return PrerequisiteResult(
                        item=prior.item,
                        department=row.department,
                        certificates=certificates_of(row),
                    )
        return _problem(
            pointer,
            "prior_result_not_approved",
            f"办件{prior.project_no}中“{bundle_type.item(prior.item).name_zh}”未获批准",
            f"{prior.item} was not approved in application {prior.project_no}",
        )

    def fetch(self, verified: Verified) -> tuple[Evidence, list[Problem]]:
        """The verified licences' files, stored in the material store and referenced."""
        priors = list(verified.prior_results)
        if self._library is None or not verified.licences:
            return Evidence(prior_results=tuple(priors)), []
        try:
            files = self._library.download_all([record for _want, record in verified.licences])
        except CertificateLibraryUnavailable:
            unverified = [_unverifiable(want, configured=True) for want, _r in verified.licences]
            return Evidence(), unverified
        licences: list[FetchedLicence] = []
        problems: list[Problem] = []
        for (want, record), content in zip(verified.licences, files, strict=True):
            try:
                material = self._materials.keep(
                    content,
                    media_type=record.media_type,
                    file_name=record.file_name,
                    name=f"{record.name_zh}（电子证照 {record.number}）",
                )
            except MaterialRejected as refused:
                problems.append(
                    _problem(
                        want.pointer,
                        "licence_file_unreadable",
                        f"电子证照库中{record.name_zh}（编号{record.number}）的文件无法读取，"
                        "请上传证照材料",
                        f"the library's file of {record.number} was refused: {refused}",
                    )
                )
                continue
            if want.prior is None:
                licences.append(
                    FetchedLicence(
                        type_code=record.type_code, number=record.number, material=material
                    )
                )
            else:
                priors.append(_certificate_result(want, record, material))
        return Evidence(licences=tuple(licences), prior_results=tuple(priors)), problems


def _parsed(entries: Any, model: type[Any], base: str) -> Iterable[tuple[str, Any]]:
    """The entries of a list that are valid `model`s, with their pointers (an invalid
    one is the contract check's problem)."""
    if not isinstance(entries, list):
        return
    for index, entry in enumerate(entries):
        try:
            yield f"{base}/{index}", model.model_validate(entry)
        except ValidationError:
            continue


def _agent_id(agent: Any) -> str | None:
    number = agent.get("id_number") if isinstance(agent, dict) else None
    return number.strip().upper() if isinstance(number, str) else None


def _prior_problem(
    bundle_type: BundleType, items: Any, prior: PriorResult, pointer: str
) -> Problem | None:
    """A prior result must stand for a prerequisite of a selected item that is not
    itself selected; a certificate must be the licence that item issues."""
    selected = (
        {code for code in items if isinstance(code, str)} if isinstance(items, list) else set()
    )
    needed = {
        code
        for item in bundle_type.items
        if item.code in selected
        for prerequisite in item.prerequisites
        for code in prerequisite.any_of
    }
    if prior.item not in needed or prior.item in selected:
        return _problem(
            pointer + "/item",
            "prior_result_not_needed",
            f"所引用的“{prior.item}”不是所选事项未选择的前置事项",
            f"{prior.item!r} is not an unselected prerequisite of a selected item",
        )
    if prior.certificate is not None:
        service = bundle_type.item(prior.item).service
        expected = RESULT_LICENCE_TYPES.get(service)
        if prior.certificate.type_code != expected:
            name = bundle_type.item(prior.item).name_zh
            return _problem(
                pointer + "/certificate/type_code",
                "prior_result_certificate_type",
                f"“{name}”的办理结果"
                + (
                    f"应为{LICENCE_TYPES[expected]}" if expected else "无电子证照，请填写原办件编号"
                ),
                f"the result of {prior.item} is "
                + (f"a {expected}" if expected else "no licence: cite its case number"),
            )
    return None


def _licence_problem(
    want: _Wanted,
    record: LicenceRecord | None,
    holder: str | None,
    agent_id: str | None,
    today: Any,
) -> Problem | None:
    citation = want.citation
    name = LICENCE_TYPES[citation.type_code]
    if record is None:
        return _problem(
            want.pointer,
            "licence_not_found",
            f"电子证照库中没有编号为{citation.number}的{name}",
            f"the certificate library has no {citation.type_code} numbered {citation.number}",
        )
    claimed = citation.holder_id.upper()
    if record.holder_id.upper() != claimed or claimed != holder:
        whose = "代办人本人" if agent_id and record.holder_id.upper() == agent_id else "他人"
        return _problem(
            want.pointer,
            "licence_not_applicants",
            f"{name}（编号{citation.number}）属于{whose}，不属于申请人，不能代替申请人的证照",
            f"{citation.type_code} {citation.number} belongs to someone other than the applicant",
        )
    if record.lapsed(today):
        return _problem(
            want.pointer,
            "licence_lapsed",
            f"{name}（编号{citation.number}）已过有效期或已被吊销、注销",
            f"{citation.type_code} {citation.number} is expired or revoked",
        )
    return None


def _unverifiable(want: _Wanted, *, configured: bool) -> Problem:
    name = LICENCE_TYPES[want.citation.type_code]
    if configured:
        zh = f"电子证照库暂时无法核验{name}（编号{want.citation.number}），请稍后重试或上传证照材料"
        en = "the certificate library did not answer: retry later, or upload the licence"
    else:
        zh = f"本平台未接入电子证照库，无法核验{name}，请上传证照材料"
        en = "no certificate library is configured: upload the licence instead"
    return _problem(want.pointer, "licence_unverifiable", zh, en)


def _certificate_result(
    want: _Wanted, record: LicenceRecord, material: MaterialRef
) -> PrerequisiteResult:
    assert want.prior is not None
    certificate = Certificate(
        certificate_name=record.name_zh,
        certificate_number=record.number,
        certificate_type_code=record.type_code,
        issuer_name=record.issuer_name,
        issue_date=record.issue_date,
        valid_until=record.valid_until,
        file=material,
    )
    return PrerequisiteResult(
        item=want.prior.item, department=want.department, certificates=(certificate,)
    )


def _problem(pointer: str, code: str, zh: str, en: str) -> Problem:
    return Problem(pointer=pointer, code=code, message_zh=zh, message_en=en)
