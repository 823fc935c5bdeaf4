"""The front-end machine (前置机) exchange: packages in through a directory, replies out.

Each test runs embedded (SQLite) and connected (PostgreSQL; the end-to-end test RabbitMQ
too). The watcher and exporter are driven by `scan_once` / `export_once`; only the
end-to-end test waits for the stack's own threads.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import eventually, new_project_no, running_stack, sample_png
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs

from adapters.base import Adapter
from adapters.context import AdapterContext
from adapters.simulated import simulated_adapter
from contracts.application import MAX_MATERIAL_BYTES
from contracts.catalog import Catalog
from contracts.messages import Decided, ItemDispatch, OutcomeResult
from contracts.samples import SAMPLE_PDF, minimal_pdf, sample_application
from lianban.settings import Settings
from router.channels import filedrop
from router.channels.filedrop import Layout, PackageWatcher
from router.channels.filedrop_export import ReplyExporter
from router.domain.intake import Intake
from router.domain.withdrawal import withdraw
from router.store import Database, ReplyRow
from runtime.storage import LocalMaterialStore

CERTIFICATE_PNG = sample_png()


@dataclass
class Drop:
    layout: Layout
    watcher: PackageWatcher
    exporter: ReplyExporter
    materials: LocalMaterialStore
    database: Database

    def put(self, name: str, data: bytes) -> Path:
        """As the platform does: write under a `.part` name, then rename."""
        part = self.layout.inbox / f"{name}.part"
        part.write_bytes(data)
        return part.rename(self.layout.inbox / name)

    def receipt(self, project_no: str) -> dict[str, Any]:
        receipt: dict[str, Any] = json.loads(
            (self.layout.outbox / f"{project_no}.receipt.json").read_text()
        )
        return receipt


@pytest.fixture
def drop(settings: Settings, catalog: Catalog, tmp_path: Path) -> Iterator[Drop]:
    database = Database(settings.database_url)
    database.migrate()
    materials = LocalMaterialStore(settings.materials_dir)
    layout = Layout(tmp_path / "filedrop")
    watcher = PackageWatcher(layout, Intake(database, catalog, materials), materials, catalog)
    yield Drop(layout, watcher, ReplyExporter(layout, database, materials), materials, database)
    database.dispose()


def _application(catalog: Catalog) -> dict[str, Any]:
    """A newborn whose materials are all one scan, the package's one PDF_ENTRY."""
    application = sample_application(catalog.bundle_types["newborn"], new_project_no())
    for material in application["materials"]:
        material["file_name"] = PDF_ENTRY[0]
    return application


def _zip(*entries: tuple[str | zipfile.ZipInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of a duplicate name, as meant
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    return buffer.getvalue()


def _manifest(application: dict[str, Any]) -> tuple[str, bytes]:
    return "manifest.json", json.dumps(application, ensure_ascii=False).encode()


PDF_ENTRY = ("application.pdf", SAMPLE_PDF)


def _package(application: dict[str, Any]) -> bytes:
    return _zip(_manifest(application), PDF_ENTRY)


def _add_material(
    application: dict[str, Any], file_name: str, data: bytes, **changes: Any
) -> dict[str, Any]:
    application["materials"].append(
        {
            "name": "补充材料",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "media_type": "application/pdf",
            "file_name": file_name,
            **changes,
        }
    )
    return application


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _stored_with_bad_crc(application: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(*_manifest(application))
        archive.writestr(*PDF_ENTRY)
    return buffer.getvalue().replace(SAMPLE_PDF, SAMPLE_PDF[:-4] + b"XXXX")


BOMB = b"%PDF-" + bytes(20 * 1024 * 1024)
OVERSIZED = b"%PDF-" + bytes(MAX_MATERIAL_BYTES - 4)
SECOND = minimal_pdf("second material")
SECOND_CLAIMED = minimal_pdf("second materiaL")  # same size, another digest

Build = Callable[[dict[str, Any]], bytes]
CASES: list[tuple[str, Build, str, str]] = [
    ("not_a_zip", lambda a: b"%PDF-1.4 not an archive", "archive_invalid", "not a ZIP archive"),
    (
        "path_traversal",
        lambda a: _zip(_manifest(a), PDF_ENTRY, ("../../etc/cron.d/x", b"* * * * * x")),
        "archive_unsafe",
        "'../../etc/cron.d/x' points outside the archive",
    ),
    (
        "absolute_path",
        lambda a: _zip(_manifest(a), PDF_ENTRY, ("/etc/passwd", b"root")),
        "archive_unsafe",
        "'/etc/passwd' is an absolute path",
    ),
    (
        "symlink",
        lambda a: _zip(_manifest(a), (_symlink("application.pdf"), b"/etc/shadow")),
        "archive_unsafe",
        "'application.pdf' is a symbolic link",
    ),
    (
        "duplicate_name",
        lambda a: _zip(_manifest(a), PDF_ENTRY, PDF_ENTRY),
        "archive_unsafe",
        "'application.pdf' appears twice",
    ),
    (
        "nested",
        lambda a: _zip(_manifest(a), ("scans/application.pdf", SAMPLE_PDF)),
        "archive_unsafe",
        "is not a file at the top level",
    ),
    (
        "unlisted_entry",
        lambda a: _zip(_manifest(a), PDF_ENTRY, ("notes.pdf", SAMPLE_PDF)),
        "archive_unsafe",
        "'notes.pdf' is not a material of the manifest",
    ),
    (
        "too_many_entries",
        lambda a: _zip(_manifest(a), PDF_ENTRY, *((f"{n}.pdf", b"x") for n in range(100))),
        "archive_unsafe",
        "102 entries; at most 101",
    ),
    (
        "zip_bomb",
        lambda a: _zip(
            _manifest(_add_material(a, "bomb.pdf", BOMB)), PDF_ENTRY, ("bomb.pdf", BOMB)
        ),
        "archive_unsafe",
        "'bomb.pdf' expands more than 100-fold",
    ),
    (
        "entry_over_the_cap",
        lambda a: _zip(_manifest(a), PDF_ENTRY, ("big.pdf", OVERSIZED + b"x")),
        "archive_unsafe",
        f"'big.pdf' is larger than {MAX_MATERIAL_BYTES} bytes",
    ),
    (
        "corrupt_entry",
        _stored_with_bad_crc,
        "archive_invalid",
        "'application.pdf' cannot be read: Bad CRC-32",
    ),
    ("no_manifest", lambda a: _zip(PDF_ENTRY), "manifest_invalid", "has no manifest.json"),
    (
        "manifest_not_json",
        lambda a: _zip(("manifest.json", b"{'project_no': 1}"), PDF_ENTRY),
        "manifest_invalid",
        "manifest.json is not JSON",
    ),
    (
        # The first material is fine: staging keeps it out of the store all the same.
        "hash_mismatch",
        lambda a: _zip(
            _manifest(_add_material(a, "second.pdf", SECOND_CLAIMED)),
            PDF_ENTRY,
            ("second.pdf", SECOND),
        ),
        "material_rejected",
        "'second.pdf': content does not match its SHA-256",
    ),
    (
        "type_mismatch",
        lambda a: _zip(
            _manifest(_add_material(a, "photo.png", SAMPLE_PDF, media_type="image/png")),
            PDF_ENTRY,
            ("photo.png", SAMPLE_PDF),
        ),
        "material_rejected",
        "'photo.png': content is not image/png",
    ),
    (
        "size_mismatch",
        lambda a: _zip(
            _manifest(_add_material(a, "second.pdf", SECOND, size=len(SECOND) + 1)),
            PDF_ENTRY,
            ("second.pdf", SECOND),
        ),
        "material_rejected",
        f"'second.pdf' is {len(SECOND)} bytes, not {len(SECOND) + 1}",
    ),
]


def _assert_failed(drop: Drop, name: str, code: str) -> dict[str, Any]:
    """The package is in failed/ with its reason, and nothing else was left anywhere."""
    assert drop.watcher.scan_once() == [drop.layout.failed / name]
    reason: dict[str, Any] = json.loads(
        (drop.layout.failed / f"{name}.reason.json").read_text(encoding="utf-8")
    )
    assert (reason["package"], reason["code"]) == (name, code)
    assert drop.materials.stored_files() == []
    assert sorted(path.name for path in drop.layout.root.iterdir()) == [
        "failed",
        "inbox",
        "outbox",
        "processed",
    ]
    for directory in (drop.layout.inbox, drop.layout.outbox, drop.layout.processed):
        assert list(directory.iterdir()) == []
    return reason


@pytest.mark.parametrize(
    ("build", "code", "message"),
    [pytest.param(build, code, message, id=name) for name, build, code, message in CASES],
)
def test_a_bad_package_goes_to_failed_with_its_reason_and_stores_nothing(
    drop: Drop, catalog: Catalog, build: Build, code: str, message: str
) -> None:
    drop.put("bad.zip", build(_application(catalog)))
    reason = _assert_failed(drop, "bad.zip", code)
    assert message in reason["message"]
    assert reason["problems"] == []


def test_a_package_over_the_total_size_is_refused_unopened(
    drop: Drop, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filedrop, "MAX_PACKAGE_BYTES", len(SAMPLE_PDF))
    drop.put("big.zip", _package(_application(catalog)))
    reason = _assert_failed(drop, "big.zip", "archive_unsafe")
    assert f"bytes uncompressed; at most {len(SAMPLE_PDF)}" in reason["message"]


def test_an_application_intake_refuses_lists_every_problem_and_stores_nothing(
    drop: Drop, catalog: Catalog
) -> None:
    application = _application(catalog)
    id_number = application["applicant"]["id_number"]
    wrong_check = "1" if id_number[-1] != "1" else "2"
    application["applicant"]["id_number"] = id_number[:-1] + wrong_check
    application["items"].append("no_such_item")
    second = _add_material(application, "second.pdf", SECOND)["materials"][-1]
    application["materials"] = [second, *application["materials"]]
    # second.pdf is in the archive; application.pdf (every sample material) is neither
    # there nor uploaded.
    drop.put("refused.zip", _zip(_manifest(application), ("second.pdf", SECOND)))

    reason = _assert_failed(drop, "refused.zip", "refused")
    assert "一次告知" in reason["message"]
    codes = {problem["pointer"]: problem["code"] for problem in reason["problems"]}
    unknown_item = f"/items/{len(application['items']) - 1}"
    absent = {
        f"/materials/{index}"
        for index, material in enumerate(application["materials"])
        if material["file_name"] == PDF_ENTRY[0]
    }
    assert codes.keys() == {"/applicant/id_number", unknown_item, *absent}
    assert codes["/applicant/id_number"] == "resident_id_checksum"
    assert codes[unknown_item] == "item_unknown"
    assert {codes[pointer] for pointer in absent} == {"material_not_uploaded"}
    assert all(problem["message_zh"] for problem in reason["problems"])


def test_a_good_package_is_accepted_once_and_a_repeat_drop_gets_the_same_receipt(
    drop: Drop, catalog: Catalog
) -> None:
    application = _application(catalog)
    package = _package(application)
    drop.put("newborn.zip", package)

    assert drop.watcher.scan_once() == [drop.layout.processed / "newborn.zip"]
    receipt = drop.receipt(application["project_no"])
    assert receipt["project_no"] == application["project_no"]
    assert drop.materials.read(hashlib.sha256(SAMPLE_PDF).hexdigest()) == SAMPLE_PDF
    stored = drop.materials.stored_files()
    assert list(drop.layout.inbox.iterdir()) == list(drop.layout.failed.iterdir()) == []

    drop.put("newborn.zip", package)
    assert drop.watcher.scan_once() == [drop.layout.processed / "newborn.zip"]
    assert drop.receipt(application["project_no"]) == receipt
    assert drop.materials.stored_files() == stored
    assert list(drop.layout.inbox.iterdir()) == list(drop.layout.failed.iterdir()) == []


def test_another_application_under_a_used_case_number_is_a_conflict(
    drop: Drop, catalog: Catalog
) -> None:
    application = _application(catalog)
    drop.put("first.zip", _package(application))
    assert drop.watcher.scan_once() == [drop.layout.processed / "first.zip"]

    application["form"]["contact_address"] = "郑州市金水区另一路2号"
    drop.put("second.zip", _package(application))
    assert drop.watcher.scan_once() == [drop.layout.failed / "second.zip"]
    reason = json.loads((drop.layout.failed / "second.zip.reason.json").read_text())
    assert reason["code"] == "conflict"
    assert application["project_no"] in reason["message"]


def test_a_package_still_being_written_is_left_alone(drop: Drop, catalog: Catalog) -> None:
    package = _package(_application(catalog))
    part = drop.layout.inbox / "slow.zip.part"
    part.write_bytes(package[: len(package) // 2])

    assert drop.watcher.scan_once() == []
    assert list(drop.layout.inbox.iterdir()) == [part]
    assert drop.materials.stored_files() == []
    assert list(drop.layout.failed.iterdir()) == []

    with part.open("ab") as file:
        file.write(package[len(package) // 2 :])
    part.rename(drop.layout.inbox / "slow.zip")
    assert drop.watcher.scan_once() == [drop.layout.processed / "slow.zip"]


def test_a_symbolic_link_dropped_in_the_inbox_is_not_followed(
    drop: Drop, catalog: Catalog, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere.zip"
    elsewhere.write_bytes(_package(_application(catalog)))
    (drop.layout.inbox / "link.zip").symlink_to(elsewhere)
    reason = _assert_failed(drop, "link.zip", "archive_unsafe")
    assert reason["message"] == "the package is a symbolic link"


def _accepted_and_withdrawn(drop: Drop, catalog: Catalog) -> str:
    """A package accepted, then withdrawn: its bundle has its reply. Returns the case number."""
    application = _application(catalog)
    drop.put(f"{application['project_no']}.zip", _package(application))
    drop.watcher.scan_once()
    bundle_id = uuid.UUID(drop.receipt(application["project_no"])["bundle_id"])
    withdraw(drop.database, bundle_id)
    project_no: str = application["project_no"]
    return project_no


def _hidden(directory: Path) -> list[Path]:
    return list(directory.rglob(".*"))


def test_each_reply_is_exported_once_even_across_a_restart(drop: Drop, catalog: Catalog) -> None:
    project_no = _accepted_and_withdrawn(drop, catalog)
    reply_file = drop.layout.outbox / f"{project_no}.reply.json"

    assert drop.exporter.export_once() >= 1
    reply = json.loads(reply_file.read_text(encoding="utf-8"))
    assert reply["bundle_id"] == drop.receipt(project_no)["bundle_id"]
    assert (reply["kind"], reply["outcome"]) == ("reply", "withdrawn")
    assert _hidden(drop.layout.outbox) == []

    reply_file.unlink()  # the platform took it
    restarted = ReplyExporter(drop.layout, drop.database, drop.materials)
    assert restarted.export_once() == 0
    assert not reply_file.exists()


def test_a_reply_committed_late_is_still_exported(drop: Drop, catalog: Catalog) -> None:
    """Its created_at is older than the newest exported reply's, as when its transaction
    took its time to commit; looking OVERLAP back finds it."""
    first = _accepted_and_withdrawn(drop, catalog)
    drop.exporter.export_once()
    late = _accepted_and_withdrawn(drop, catalog)
    with drop.database.transaction() as session:
        first_row, late_row = (
            session.get(ReplyRow, (uuid.UUID(drop.receipt(p)["bundle_id"]), 1))
            for p in (first, late)
        )
        assert first_row is not None and late_row is not None
        late_row.created_at = first_row.created_at - timedelta(minutes=1)

    assert drop.exporter.export_once() == 1
    assert (drop.layout.outbox / f"{late}.reply.json").is_file()


def test_a_crash_before_the_rename_leaves_no_half_written_reply(
    drop: Drop, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_no = _accepted_and_withdrawn(drop, catalog)
    reply_file = drop.layout.outbox / f"{project_no}.reply.json"
    rename = os.replace
    written: list[tuple[Path, bytes]] = []

    def crash_before_the_reply_is_renamed(source: str, target: str) -> None:
        if Path(target) != reply_file:
            return rename(source, target)
        written.append((Path(source), Path(source).read_bytes()))
        raise OSError("the process died here")

    monkeypatch.setattr(os, "replace", crash_before_the_reply_is_renamed)
    with pytest.raises(OSError, match="died"):
        drop.exporter.export_once()
    monkeypatch.undo()

    [(temporary, content)] = written
    assert temporary.parent == drop.layout.outbox and temporary.name.startswith(".")
    assert json.loads(content)["project_no"] == project_no, "written whole before the rename"
    assert not reply_file.exists()
    assert _hidden(drop.layout.outbox) == []

    assert drop.exporter.export_once() >= 1
    assert json.loads(reply_file.read_text())["project_no"] == project_no
    assert _hidden(drop.layout.outbox) == []


def _certifying_health(catalog: Catalog) -> Adapter:
    """The simulated health department, issuing each certificate with its file."""
    simulated: Any = type(simulated_adapter("health", catalog))

    class CertifyingHealth(simulated):
        async def handle(self, item: ItemDispatch, ctx: AdapterContext) -> OutcomeResult:
            result: OutcomeResult = await super().handle(item, ctx)
            if not isinstance(result, Decided) or not result.approved:
                return result
            file = await ctx.store_certificate(
                CERTIFICATE_PNG, "image/png", f"{item.item}.png", item.item_name_zh
            )
            certificates = tuple(c.model_copy(update={"file": file}) for c in result.certificates)
            return result.model_copy(update={"certificates": certificates})

    adapter: Adapter = CertifyingHealth()
    return adapter


def test_a_dropped_package_gets_its_reply_and_certificates_in_the_outbox(
    settings: Settings, catalog: Catalog, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"filedrop_dir": tmp_path / "filedrop"})
    layout = Layout(tmp_path / "filedrop")
    application = _application(catalog)
    project_no = application["project_no"]
    reply_file = layout.outbox / f"{project_no}.reply.json"
    with running_stack(settings, catalog, adapters=[_certifying_health(catalog)]):
        (layout.inbox / "newborn.zip.part").write_bytes(_package(application))
        (layout.inbox / "newborn.zip.part").rename(layout.inbox / "newborn.zip")
        eventually(reply_file.exists, timeout=60, message=f"{reply_file.name} did not appear")

    receipt = json.loads((layout.outbox / f"{project_no}.receipt.json").read_text())
    reply = json.loads(reply_file.read_text(encoding="utf-8"))
    assert reply["bundle_id"] == receipt["bundle_id"]
    assert reply["outcome"] == "all_approved"
    assert (layout.processed / "newborn.zip").is_file()
    files = {
        item["item"]: certificate["file"]
        for item in reply["items"]
        for certificate in item["certificates"]
        if certificate["file"]
    }
    assert set(files) == {"birth_medical_certificate", "vaccination_certificate"}
    for file in files.values():
        assert (layout.outbox / project_no / file["sha256"]).read_bytes() == CERTIFICATE_PNG
    assert _hidden(layout.outbox) == []


# Issue 16, finding 6: a package that fails for a reason that will not change goes to
# failed/ on the first scan; only a transient cause keeps it in the inbox, logged once.
def test_a_manifest_nested_too_deep_goes_to_failed_on_the_first_scan(
    drop: Drop, catalog: Catalog
) -> None:
    nested = b"[" * 5000 + json.dumps(_application(catalog)).encode() + b"]" * 5000
    drop.put("deep.zip", _zip(("manifest.json", nested), PDF_ENTRY))
    reason = _assert_failed(drop, "deep.zip", "manifest_invalid")
    assert "nested deeper than" in reason["message"]


def test_a_manifest_with_a_nul_goes_to_failed_naming_the_field(
    drop: Drop, catalog: Catalog
) -> None:
    application = _application(catalog)
    application["applicant"]["name"] += "\x00"
    drop.put("nul.zip", _package(application))
    reason = _assert_failed(drop, "nul.zip", "refused")
    codes = {problem["pointer"]: problem["code"] for problem in reason["problems"]}
    assert codes == {"/applicant/name": "text_unclean"}


def test_an_error_that_would_recur_sends_the_package_to_failed(
    drop: Drop, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(raw: Any, key: str | None) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(drop.watcher._intake, "submit", broken)
    drop.put("bug.zip", _package(_application(catalog)))
    assert drop.watcher.scan_once() == [drop.layout.failed / "bug.zip"]
    reason = json.loads((drop.layout.failed / "bug.zip.reason.json").read_text())
    assert (reason["code"], reason["message"]) == ("unprocessable", "KeyError")


def test_a_transient_cause_keeps_the_package_in_the_inbox_logged_once(
    drop: Drop, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    submit = drop.watcher._intake.submit

    def database_away(raw: Any, key: str | None) -> Any:
        raise OperationalError("INSERT", {}, ConnectionRefusedError("database is away"))

    monkeypatch.setattr(drop.watcher._intake, "submit", database_away)
    package = drop.put("later.zip", _package(_application(catalog)))
    with capture_logs() as logs:
        for _ in range(3):
            assert drop.watcher.scan_once() == []
    assert package.exists()
    assert [entry["event"] for entry in logs] == ["filedrop.package_deferred"]

    monkeypatch.setattr(drop.watcher._intake, "submit", submit)
    assert drop.watcher.scan_once() == [drop.layout.processed / "later.zip"]
