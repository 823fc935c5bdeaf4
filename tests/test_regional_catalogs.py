"""Regional catalogs (province, Zhengzhou, Weibin) chosen by the application's area, and
catalog versions: a bundle finishes under the version it was accepted under, whatever is
published while it is in flight.

The intake and correlator tests run on SQLite and (connected) on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from harness import KEYRING, eventually, new_project_no
from sqlalchemy import select

from contracts.api import BundleState
from contracts.catalog import Catalog, Level
from contracts.catalog.loader import DATA_DIR
from contracts.messages import Accepted, Decided, ItemDispatch, ItemOutcome
from contracts.samples import SAMPLE_PDF, sample_application
from lianban.settings import Settings
from lianban.stack import Role, Stack
from router.domain.catalogs import CatalogShelf
from router.domain.correlator import Correlator
from router.domain.intake import Intake, ProblemsFound, Received
from router.store import BundleRow, Database, OutboxRow
from runtime import clock
from runtime.storage import LocalMaterialStore

ZHENGZHOU_AREA = "410102"  # 郑州市中原区
WEIBIN_AREA = "410703"  # 新乡市卫滨区
XINXIANG_OTHER_AREA = "410702"  # 新乡市红旗区: no overlay, the provincial list
BEIJING_AREA = "110101"


def test_the_weibin_list_is_loaded_row_for_row(catalog: Catalog) -> None:
    """Seed 004 附件2 numbers 44 rows; three bundles run over a page break under two
    numbers (我要开药店 6–7, 我要开游戏娱乐厅 13–14, 我要变更民族成分 29–30), so 41 types."""
    weibin = catalog.regions["weibin"].bundle_types
    numbers = sorted(s.number for bt in weibin.values() for s in bt.sources)
    assert numbers == list(range(1, 45))
    assert len(weibin) == 41
    names = {bt.name_zh for bt in weibin.values()}
    assert {"我要开奶茶店", "工伤一件事", "渣土车运输一件事"} <= names
    assert catalog.regions["weibin"].overrides == ()


def test_each_region_has_its_own_list_on_top_of_the_provinces(catalog: Catalog) -> None:
    counts = {code: len(catalog.for_region(code).bundle_types) for code in catalog.regions}
    assert (len(catalog.bundle_types), counts) == (45, {"zhengzhou": 51, "weibin": 86})
    zhengzhou = catalog.for_region("zhengzhou")
    by_list: dict[str, set[int]] = {}
    for bundle_type in zhengzhou.bundle_types.values():
        for source in bundle_type.sources:
            by_list.setdefault(source.list, set()).add(source.number)
    assert by_list["zhengzhou-2023-enterprise"] == set(range(1, 30))
    assert by_list["zhengzhou-2023-personal"] == set(range(1, 22))
    assert "open_tobacco_liquor_shop" not in catalog.bundle_types


def test_where_zhengzhou_and_henan_differ_each_keeps_its_own(catalog: Catalog) -> None:
    henan = catalog.for_area(XINXIANG_OTHER_AREA)
    zhengzhou = catalog.for_area(ZHENGZHOU_AREA)
    assert henan is not None and zhengzhou is not None
    assert henan.region == "henan" and zhengzhou.region == "zhengzhou"
    levels = {
        view.region: [item.levels for item in view.bundle_types["open_feed_mill"].items]
        for view in (henan, zhengzhou)
    }
    assert levels["henan"][:3] == [(Level.PROVINCE,)] * 3
    assert levels["zhengzhou"][:3] == [(Level.CITY,), (Level.CITY,), (Level.PROVINCE,)]
    food = {
        view.region: view.bundle_types["open_supermarket"].items[0] for view in (henan, zhengzhou)
    }
    assert food["henan"].name_zh == "食品经营许可或仅销售预包装食品备案"
    assert food["zhengzhou"].name_zh == "食品经营备案（仅销售预包装食品）"
    assert food["zhengzhou"].levels == (Level.CITY, Level.COUNTY)


def test_the_new_house_fund_loan_is_with_housing_and_construction(catalog: Catalog) -> None:
    """Both seed lists (002 第15项, 001 附件2 第16项) say 住房城乡建设部门."""
    loan = catalog.bundle_types["housing_fund_loan"].item("loan_new_house")
    assert loan.department == "housing"


def test_an_overlay_may_not_shadow_a_provincial_type_without_saying_so(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    shutil.copytree(DATA_DIR, root)
    overrides = root / "regions" / "zhengzhou" / "overrides"
    (overrides / "open_feed_mill.yaml").rename(
        root / "regions" / "zhengzhou" / "bundles" / "open_feed_mill.yaml"
    )
    from contracts.catalog import load_catalog
    from contracts.errors import CatalogError

    with pytest.raises(CatalogError, match=r"provincial bundle types.*regions/zhengzhou/overrides"):
        load_catalog(root)


@pytest.fixture
def materials(tmp_path: Path) -> LocalMaterialStore:
    store = LocalMaterialStore(tmp_path / "materials")
    store.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    return store


def _application(catalog: Catalog, bundle_type: str, area: str) -> dict[str, Any]:
    view = catalog.for_area(area)
    assert view is not None
    application = sample_application(view.bundle_types[bundle_type], new_project_no())
    application["area_code"] = area
    return application


def test_the_same_bundle_type_is_accepted_under_each_areas_own_definition(
    database: Database, catalog: Catalog, materials: LocalMaterialStore
) -> None:
    intake = Intake(database, catalog, materials)
    regions = {}
    for area in (ZHENGZHOU_AREA, WEIBIN_AREA):
        application = _application(catalog, "open_feed_mill", area)
        result = intake.submit(application, application["project_no"])
        assert isinstance(result, Received), result
        with database.transaction() as session:
            bundle = session.get(BundleRow, result.receipt.bundle_id)
            assert bundle is not None
            assert bundle.catalog_version == catalog.version
            regions[area] = bundle.catalog_region
    assert regions == {ZHENGZHOU_AREA: "zhengzhou", WEIBIN_AREA: "weibin"}
    # Weibin has no 开饲料加工厂 of its own: the province's (省级), not Zhengzhou's (市级).
    levels = {
        region: catalog.for_region(region).bundle_types["open_feed_mill"].items[0].levels
        for region in regions.values()
    }
    assert levels == {"zhengzhou": (Level.CITY,), "weibin": (Level.PROVINCE,)}


def test_a_district_bundle_type_is_accepted_only_in_its_district(
    database: Database, catalog: Catalog, materials: LocalMaterialStore
) -> None:
    intake = Intake(database, catalog, materials)
    milk_tea = _application(catalog, "weibin_open_milk_tea_shop", WEIBIN_AREA)
    assert isinstance(intake.submit(milk_tea, milk_tea["project_no"]), Received)

    elsewhere = {**milk_tea, "project_no": new_project_no(), "area_code": ZHENGZHOU_AREA}
    refused = intake.submit(elsewhere, elsewhere["project_no"])
    assert isinstance(refused, ProblemsFound)
    assert [p.code for p in refused.notice.problems] == ["bundle_type_unknown"]
    assert "郑州市" in refused.notice.problems[0].message_zh


def test_an_area_outside_the_province_is_refused_at_intake(
    database: Database, catalog: Catalog, materials: LocalMaterialStore
) -> None:
    application = _application(catalog, "newborn", ZHENGZHOU_AREA)
    application["area_code"] = BEIJING_AREA
    refused = Intake(database, catalog, materials).submit(application, application["project_no"])
    assert isinstance(refused, ProblemsFound)
    assert [(p.pointer, p.code) for p in refused.notice.problems] == [
        ("/area_code", "area_outside_catalog")
    ]


def _renamed_newborn_version(directory: Path, name: str) -> None:
    """A version in which the newborn's first item has another code (an item renamed)."""
    root = directory / name
    shutil.copytree(DATA_DIR, root)
    newborn = root / "bundles" / "newborn.yaml"
    text = (
        newborn.read_text(encoding="utf-8")
        .replace("code: birth_medical_certificate\n", "code: birth_medical_certificate_issue\n")
        .replace("any_of: [birth_medical_certificate]", "any_of: [birth_medical_certificate_issue]")
    )
    newborn.write_text(text, encoding="utf-8")


def _dispatches(database: Database, bundle_id: uuid.UUID) -> list[ItemDispatch]:
    with database.transaction() as session:
        rows = session.scalars(
            select(OutboxRow).where(OutboxRow.correlation_id == str(bundle_id))
        ).all()
        bodies = [json.loads(row.body) for row in rows if row.routing_key.startswith("dept.")]
    # Dispatches only: a pre-reviewed item is sent its prerequisites' results as a supplement.
    dispatches = [
        ItemDispatch.model_validate(body) for body in bodies if body["kind"] == "dispatch"
    ]
    return dispatches


def test_a_version_published_in_flight_leaves_the_bundle_under_its_own(
    database: Database, catalog: Catalog, materials: LocalMaterialStore, tmp_path: Path
) -> None:
    published = tmp_path / "catalogs"
    published.mkdir()
    shelf = CatalogShelf(catalog, published)
    application = _application(catalog, "newborn", ZHENGZHOU_AREA)
    received = Intake(database, shelf, materials).submit(application, application["project_no"])
    assert isinstance(received, Received)
    bundle_id = received.receipt.bundle_id

    _renamed_newborn_version(published, "2026-12-04.1")
    assert shelf.refresh() == ["2026-12-04.1"]
    assert "birth_medical_certificate" not in shelf.current().bundle_types["newborn"].item_codes

    correlator = Correlator(database, shelf, keyring=KEYRING)
    # Every department accepts and approves; a pre-reviewed item is decided once its
    # prerequisites are, so answer again until nothing is left open (a few rounds).
    for _ in range(len(received.receipt.items)):
        for dispatch in _dispatches(database, bundle_id):
            for result in (Accepted(), Decided(approved=True)):  # 受理, then 办结
                correlator.apply(
                    ItemOutcome(
                        bundle_id=bundle_id,
                        item=dispatch.item,
                        department=dispatch.department,
                        dispatch_id=dispatch.message_id,
                        occurred_at=clock.now(),
                        result=result,
                    )
                )
    with database.transaction() as session:
        bundle = session.get(BundleRow, bundle_id)
        assert bundle is not None
        assert bundle.catalog_version == catalog.version
        assert bundle.state == BundleState.REPLIED
        assert "birth_medical_certificate" in {item.code for item in bundle.items}
        assert all(item.state == "approved" for item in bundle.items)

    # A bundle accepted now gets the new version.
    later = _application(shelf.current(), "newborn", ZHENGZHOU_AREA)
    accepted = Intake(database, shelf, materials).submit(later, later["project_no"])
    assert isinstance(accepted, Received)
    with database.transaction() as session:
        bundle = session.get(BundleRow, accepted.receipt.bundle_id)
        assert bundle is not None and bundle.catalog_version == "2026-12-04.1"


def test_a_version_that_does_not_load_is_not_published(catalog: Catalog, tmp_path: Path) -> None:
    published = tmp_path / "catalogs"
    (published / "2026-12-04.1" / "bundles").mkdir(parents=True)
    shelf = CatalogShelf(catalog, published)
    assert shelf.refresh() == []
    assert shelf.current() is catalog


def test_a_version_published_to_a_running_router_is_used_without_a_restart(
    settings: Settings, catalog: Catalog, tmp_path: Path
) -> None:
    published = tmp_path / "catalogs"
    published.mkdir()
    update = {"catalog_dir": published, "catalog_check_seconds": 0.05}
    stack = Stack(settings.model_copy(update=update), catalog, {Role.RELAY})
    stack.start()
    try:
        _renamed_newborn_version(published, "2026-12-04.1")
        current = eventually(
            lambda: stack.catalogs.current().version,
            lambda version: version == "2026-12-04.1",
            timeout=10,
            message="the watcher did not publish 2026-12-04.1",
        )
    finally:
        stack.stop()
    assert current == "2026-12-04.1"
    assert stack.catalogs.versions == [catalog.version, "2026-12-04.1"]
