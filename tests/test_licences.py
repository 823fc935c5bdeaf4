"""免提交, 单独申请, 准营 and 帮办代办 at intake, against a real certificate library on loopback
(adapters/simulators/certificate_library.py) and the whole stack, in both modes.

- a cited licence that belongs to someone else is named in the one 422, with every other
  problem of the application;
- a licence that verifies replaces its upload and reaches the department by reference;
- a dependent item applied for alone, its prerequisite's earlier result cited, is dispatched;
- 开饭店 by a natural person is refused; a licensed enterprise is accepted on shared data;
- an agent's application records the agent on the timeline and in the audit log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

import pytest
from harness import TEST_API_TOKEN, Running, new_project_no, running_stack
from sqlalchemy import select

from adapters.base import Adapter
from adapters.context import AdapterContext
from adapters.registry import simulate_every_department
from adapters.simulators.certificate_library import CertificateLibraryServer, LibraryState
from contracts.application import Application
from contracts.catalog import Catalog
from contracts.identity import make_resident_id, make_uscc
from contracts.licences import LICENCE_TYPES, LicenceStatus
from contracts.messages import ItemDispatch, OutcomeResult
from contracts.samples import SAMPLE_AREA, SAMPLE_PDF, sample_application, sample_material_ref
from lianban.settings import Settings
from router.store import AuditRow

APPLICANT_ID = make_resident_id(SAMPLE_AREA, date(1990, 5, 17), 1)
SOMEONE_ELSE = make_resident_id(SAMPLE_AREA, date(1985, 3, 2), 7)
AGENT_ID = make_resident_id(SAMPLE_AREA, date(1970, 8, 8), 3)
RESTAURANT = make_uscc("9", "1", SAMPLE_AREA, "00000042X")


@dataclass(frozen=True)
class Seen:
    """What the police department received for one item."""

    item: str
    files: dict[str, bytes]  # material name → the bytes pulled by reference
    prerequisites: dict[str, tuple[str, ...]]  # item → certificate numbers
    agent: str | None


class SeeingPolice:
    """The simulated police department, recording what each dispatch brought."""

    seen: ClassVar[list[Seen]] = []

    @classmethod
    def adapter(cls, catalog: Catalog) -> Adapter:
        (base,) = (type(a) for a in simulate_every_department(catalog) if a.department == "police")

        class Recording(base):  # type: ignore[valid-type,misc]
            async def handle(self, item: ItemDispatch, ctx: AdapterContext) -> OutcomeResult:
                files = {m.name: await ctx.fetch_material(m) for m in item.materials}
                prerequisites = {
                    done.item: tuple(c.certificate_number for c in done.certificates)
                    for done in item.prerequisite_results
                }
                agent = item.agent.relation.value if item.agent else None
                cls.seen.append(Seen(item.item, files, prerequisites, agent))
                result: OutcomeResult = await super().handle(item, ctx)
                return result

        cls.seen = []
        return Recording()


@pytest.fixture
def library() -> Iterator[CertificateLibraryServer]:
    with CertificateLibraryServer(LibraryState()) as server:
        yield server


@pytest.fixture
def running(
    settings: Settings, catalog: Catalog, library: CertificateLibraryServer
) -> Iterator[Running]:
    configured = settings.model_copy(update={"certificate_library_url": library.url})
    with running_stack(configured, catalog, adapters=[SeeingPolice.adapter(catalog)]) as stack:
        yield stack


def newborn(catalog: Catalog, items: list[str], **extra: Any) -> dict[str, Any]:
    application = sample_application(catalog.bundle_types["newborn"], new_project_no(), items)
    assert application["applicant"]["id_number"] == APPLICANT_ID
    return application | extra


def problems_of(response: Any) -> set[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return {(problem["pointer"], problem["code"]) for problem in response.json()["problems"]}


def test_a_licence_of_someone_else_is_named_with_every_other_problem(
    running: Running, catalog: Catalog, library: CertificateLibraryServer
) -> None:
    library.state.issue("household_register", "HR-OTHER-1", SOMEONE_ELSE, "王五")
    library.state.issue("marriage_certificate", "J410102-2015-001", APPLICANT_ID, "张三")
    not_uploaded = sample_material_ref() | {"sha256": "0" * 64, "name": "出生医学证明"}
    application = newborn(
        catalog,
        ["birth_medical_certificate", "birth_registration"],
        materials=[sample_material_ref(), not_uploaded],
        licences=[
            {"type_code": "household_register", "number": "HR-OTHER-1", "holder_id": APPLICANT_ID},
            {
                "type_code": "marriage_certificate",
                "number": "J410102-2015-001",
                "holder_id": APPLICANT_ID,
            },
            {"type_code": "resident_id_card", "number": "NO-SUCH", "holder_id": APPLICANT_ID},
        ],
    )

    response = running.submit(application)

    assert problems_of(response) == {
        ("/materials/1", "material_not_uploaded"),
        ("/materials", "material_missing"),
        ("/licences/0", "licence_not_applicants"),
        ("/licences/2", "licence_not_found"),
    }
    # The two required materials no upload names and no verified licence stands in for:
    # the household register someone else holds and the ID card the library lacks.
    missing = [
        p["message_en"] for p in response.json()["problems"] if p["code"] == "material_missing"
    ]
    assert len(missing) == 2
    assert any("parents_household_register" in message for message in missing)
    assert any("parents_id_cards" in message for message in missing)
    messages = {p["code"]: p for p in response.json()["problems"]}
    assert "HR-OTHER-1" in messages["licence_not_applicants"]["message_zh"]
    assert "不属于申请人" in messages["licence_not_applicants"]["message_zh"]
    # Nothing was fetched for a refused application: only looked up, all three at once.
    assert library.state.requests == {"lookup": 3}


def test_a_verified_licence_replaces_its_upload_and_reaches_the_department(
    running: Running, catalog: Catalog, library: CertificateLibraryServer
) -> None:
    library.state.issue("household_register", "HR-410102-0001", APPLICANT_ID, "张三")
    _record, register_file = library.state.licences[("household_register", "HR-410102-0001")]
    sample = newborn(catalog, ["birth_medical_certificate", "birth_registration"])
    # The parents' ID cards are uploaded; the household register is cited instead.
    uploads = [m for m in sample["materials"] if m["material"] != "parents_household_register"]
    application = newborn(
        catalog,
        ["birth_medical_certificate", "birth_registration"],
        materials=uploads,
        licences=[
            {
                "type_code": "household_register",
                "number": "HR-410102-0001",
                "holder_id": APPLICANT_ID,
            }
        ],
    )

    receipt = running.submit(application)
    assert receipt.status_code == 202, receipt.text
    reply = running.wait_for_reply(receipt.json()["reply_url"])

    assert reply["outcome"] == "all_approved"
    (filed,) = SeeingPolice.seen
    assert filed.files["居民户口簿（电子证照 HR-410102-0001）"] == register_file
    assert "父母居民户口簿" not in filed.files
    timeline = running.client.get(receipt.json()["status_url"]).json()["timeline"]
    validated = next(step for step in timeline if step["state"] == "validated")
    assert "1 份电子证照经电子证照库核验，免于提交" in validated["detail"]
    assert library.state.requests == {"lookup": 1, "download": 1}


def test_a_dependent_applied_for_alone_with_its_prerequisites_certificate_is_dispatched(
    running: Running, catalog: Catalog, library: CertificateLibraryServer
) -> None:
    library.state.issue(
        "birth_medical_certificate",
        "Q410000001",
        APPLICANT_ID,
        "张三",
        issuer_name="郑州市妇幼保健院",
    )
    alone = newborn(catalog, ["birth_registration"])

    refused = running.submit(alone)
    (problem,) = refused.json()["problems"]
    assert problem["code"] == "prerequisite_missing"
    assert "prior_results" in problem["message_zh"] and "出生医学证明签发" in problem["message_zh"]

    cited = alone | {
        "prior_results": [
            {
                "item": "birth_medical_certificate",
                "certificate": {
                    "type_code": "birth_medical_certificate",
                    "number": "Q410000001",
                    "holder_id": APPLICANT_ID,
                },
            }
        ]
    }
    receipt = running.submit(cited)
    assert receipt.status_code == 202, receipt.text
    reply = running.wait_for_reply(receipt.json()["reply_url"])

    assert [item["item"] for item in reply["items"]] == ["birth_registration"]
    assert reply["outcome"] == "all_approved"
    (filed,) = SeeingPolice.seen
    assert filed.prerequisites == {"birth_medical_certificate": ("Q410000001",)}


def test_a_dependent_applied_for_alone_cites_an_approval_lianban_recorded(
    running: Running, catalog: Catalog
) -> None:
    first = newborn(catalog, ["birth_medical_certificate"])
    earlier = running.submit(first)
    assert earlier.status_code == 202, earlier.text
    running.wait_for_reply(earlier.json()["reply_url"])
    prior = {"item": "birth_medical_certificate", "project_no": first["project_no"]}

    someone_elses = newborn(catalog, ["birth_registration"], prior_results=[prior])
    someone_elses["applicant"] = someone_elses["applicant"] | {"id_number": SOMEONE_ELSE}
    assert problems_of(running.submit(someone_elses)) == {
        ("/prior_results/0/project_no", "prior_result_not_found")
    }

    receipt = running.submit(newborn(catalog, ["birth_registration"], prior_results=[prior]))
    assert receipt.status_code == 202, receipt.text
    assert running.wait_for_reply(receipt.json()["reply_url"])["outcome"] == "all_approved"
    (filed,) = SeeingPolice.seen
    assert list(filed.prerequisites) == ["birth_medical_certificate"]


def test_a_natural_person_cannot_open_a_restaurant_a_licensed_enterprise_can(
    running: Running, catalog: Catalog, library: CertificateLibraryServer
) -> None:
    restaurant = catalog.bundle_types["open_restaurant"]
    person = sample_application(restaurant, new_project_no())
    person["applicant"] = newborn(catalog, ["birth_medical_certificate"])["applicant"]
    assert problems_of(running.submit(person)) == {
        ("/applicant/applicant_type", "applicant_type_not_allowed")
    }

    enterprise = sample_application(restaurant, new_project_no())
    enterprise["applicant"]["uscc"] = RESTAURANT
    assert problems_of(running.submit(enterprise)) == {("/applicant", "applicant_licence_missing")}

    library.state.issue("business_licence", RESTAURANT, RESTAURANT, "郑州示例餐饮有限公司")
    accepted = running.submit(enterprise)
    assert accepted.status_code == 202, accepted.text
    assert library.state.requests["held_by"] == 2  # 共享数据: asked by holder, not cited


def test_a_revoked_licence_and_one_of_the_agent_are_refused(
    running: Running, catalog: Catalog, library: CertificateLibraryServer
) -> None:
    library.state.issue("resident_id_card", "ID-AGENT", AGENT_ID, "赵六")
    library.state.issue(
        "marriage_certificate", "J-REVOKED", APPLICANT_ID, "张三", status=LicenceStatus.REVOKED
    )
    application = newborn(
        catalog,
        ["birth_medical_certificate"],
        agent=agent(),
        licences=[
            {"type_code": "resident_id_card", "number": "ID-AGENT", "holder_id": APPLICANT_ID},
            {"type_code": "marriage_certificate", "number": "J-REVOKED", "holder_id": APPLICANT_ID},
        ],
    )

    response = running.submit(application)

    assert problems_of(response) == {
        ("/licences/0", "licence_not_applicants"),
        ("/licences/1", "licence_lapsed"),
    }
    assert "代办人本人" in response.json()["problems"][0]["message_zh"]


def agent(authorisation: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": "赵六",
        "id_number": AGENT_ID,
        "relation": "assistant",
        "authorisation": authorisation or sample_material_ref() | {"name": "授权委托书"},
    }


def test_an_agents_application_records_the_agent(running: Running, catalog: Catalog) -> None:
    missing = sample_material_ref() | {"sha256": "1" * 64, "name": "授权委托书"}
    unauthorised = newborn(catalog, ["birth_medical_certificate"], agent=agent(missing))
    assert problems_of(running.submit(unauthorised)) == {
        ("/agent/authorisation", "material_not_uploaded")
    }

    application = newborn(
        catalog, ["birth_medical_certificate", "birth_registration"], agent=agent()
    )
    receipt = running.submit(application)
    assert receipt.status_code == 202, receipt.text
    running.wait_for_reply(receipt.json()["reply_url"])

    timeline = running.client.get(receipt.json()["status_url"]).json()["timeline"]
    applied = next(step for step in timeline if step["state"] == "applied")
    assert applied["actor"] == "agent"
    assert applied["detail"].startswith("帮办代办员赵*（证件号410102********")
    assert "受张*委托代为申请" in applied["detail"] and AGENT_ID not in applied["detail"]
    with running.stack.database.transaction() as session:
        details = session.scalars(
            select(AuditRow.detail).where(
                AuditRow.message_id == application["project_no"], AuditRow.event == "received"
            )
        ).all()
    (detail,) = details
    assert "applied_by=agent relation=assistant" in detail and AGENT_ID not in detail
    (filed,) = SeeingPolice.seen
    assert filed.agent == "assistant"
    assert filed.files["授权委托书"] == SAMPLE_PDF
    assert (
        hashlib.sha256(filed.files["授权委托书"]).hexdigest()
        == application["agent"]["authorisation"]["sha256"]
    )


def test_the_readme_example_is_a_valid_application() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    marker = "<!-- intake example: tests/test_licences.py validates it -->\n```json\n"
    example = readme.split(marker, 1)[1].split("```", 1)[0]
    application = Application.model_validate_json(example.replace("<64 hex digits>", "0" * 64))
    assert application.agent is not None and application.licences and application.prior_results


def test_a_library_slower_than_its_timeout_makes_the_licence_unverifiable(
    tmp_path: Path, catalog: Catalog
) -> None:
    """The library's time is bounded by the connector's timeout: the applicant hears to
    retry or upload, and nothing is stored."""
    with CertificateLibraryServer(LibraryState(delay_seconds=5)) as slow:
        slow.state.issue("household_register", "HR-SLOW", APPLICANT_ID, "张三")
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'lianban.db'}",
            materials_dir=tmp_path / "materials",
            port=0,
            api_tokens=(TEST_API_TOKEN,),
            certificate_library_url=slow.url,
            certificate_library_timeout_seconds=0.2,
        )
        with running_stack(settings, catalog) as running:
            citation = {"type_code": "household_register", "number": "HR-SLOW"}
            application = newborn(
                catalog,
                ["birth_medical_certificate"],
                licences=[citation | {"holder_id": APPLICANT_ID}],
            )
            response = running.submit(application)

    assert problems_of(response) == {("/licences/0", "licence_unverifiable")}
    assert "稍后重试或上传" in response.json()["problems"][0]["message_zh"]


def test_a_prior_result_must_stand_for_an_unselected_prerequisite_as_its_own_licence(
    running: Running, catalog: Catalog, library: CertificateLibraryServer
) -> None:
    library.state.issue("marriage_certificate", "J-1", APPLICANT_ID, "张三")
    not_a_prerequisite = {"item": "vaccination_certificate", "project_no": "EARLIER-1"}
    wrong_licence = {
        "item": "birth_medical_certificate",
        "certificate": {
            "type_code": "marriage_certificate",
            "number": "J-1",
            "holder_id": APPLICANT_ID,
        },
    }
    application = newborn(
        catalog, ["birth_registration"], prior_results=[not_a_prerequisite, wrong_licence]
    )

    assert problems_of(running.submit(application)) == {
        ("/prior_results/0/item", "prior_result_not_needed"),
        ("/prior_results/1/certificate/type_code", "prior_result_certificate_type"),
    }
    assert library.state.requests == {}  # refused on the catalog alone


def test_citable_licence_types_are_the_catalogs(catalog: Catalog) -> None:
    assert {code: catalog.licence_types[code].name_zh for code in LICENCE_TYPES} == LICENCE_TYPES
