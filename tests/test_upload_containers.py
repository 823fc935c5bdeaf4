"""An OFD upload is a ZIP container, checked as an archive before it is kept: a zip bomb,
an entry outside the container or a container without OFD.xml is refused and leaves
nothing in the store."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest
from harness import put_material

from lianban.stack import Stack

OFD = "application/ofd"


def _ofd(*entries: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


OFD_XML = ("OFD.xml", b'<?xml version="1.0"?><ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016"/>')


def test_a_well_formed_ofd_is_kept(intake_only: Stack) -> None:
    content = _ofd(OFD_XML, ("Doc_0/Document.xml", b"<ofd:Document/>"))
    response = put_material(intake_only, hashlib.sha256(content).hexdigest(), content, OFD)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (_ofd(OFD_XML, ("Doc_0/Res/bomb.bin", bytes(20 * 1024 * 1024))), "zip bomb"),
        (_ofd(OFD_XML, ("../../etc/cron.d/evil", b"x")), "outside the container"),
        (_ofd(("Doc_0/Document.xml", b"<ofd:Document/>")), "no OFD.xml"),
        (b"PK\x03\x04" + bytes(64), "not a readable ZIP"),
    ],
    ids=["zip_bomb", "path_traversal", "no_ofd_xml", "not_a_zip"],
)
def test_a_hostile_ofd_is_refused_and_nothing_kept(
    intake_only: Stack, content: bytes, reason: str
) -> None:
    response = put_material(intake_only, hashlib.sha256(content).hexdigest(), content, OFD)
    assert response.status_code == 422
    assert reason in response.json()["detail"]
    assert intake_only.materials.stored_files() == []
