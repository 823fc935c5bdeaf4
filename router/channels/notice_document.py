"""The notice the applicant receives, as a PDF: 受理通知书 or 不予受理决定书.

What it says follows the seeds: 001 附件3 (三) "予以受理的，出具受理通知书…不予受理的，制作
不予受理决定书，列明不予受理的具体理由"; 003 "受理之后向群众出具书面的受理通知书…不予办理的，
要出具不予受理告知书，书面告知其理由"; 行政许可法 第三十二条 (a written, dated notice naming
the authority). A rejection also tells the applicant how to contest it (001's guide
elements: 行政救济途径与方式).

The CJK font is embedded (subset), so the text renders on any reader; the output is
invariant (no timestamp or random id inside), so rendering the same notice twice gives
the same bytes and the same SHA-256 in the material store.

Subsetting the font is most of a render's cost. The characters of the template's fixed
wording are placed first, in one subset of their own, whatever the notice says: that
subset is the same for every notice of a decision, so it is built once per process, and
only the names, numbers and reasons of a notice go into a subset made for it. The same
holds for the subset's PDF objects (widths, ToUnicode map, descriptor, font file),
written out once. The page is drawn as canvas text, wrapped as Platypus wraps CJK (same
lines, same places), without Platypus: its markup parsing and flowable layout were half
a render. Streams are deflated without an ASCII85 layer (reportlab's default adds one):
smaller files, less work, the same text.
"""

from __future__ import annotations

import copy
import io
import mmap
import threading
import zlib
from array import array
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Literal, TypeVar, cast

from reportlab import rl_config
from reportlab.lib.pagesizes import A4
from reportlab.lib.textsplit import dumbSplit
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfdoc, pdfmetrics
from reportlab.pdfbase.pdfdoc import (
    BasicFonts,
    PDFArray,
    PDFDictionary,
    PDFDocument,
    PDFName,
    PDFObject,
    PDFObjectReference,
    PDFStream,
)
from reportlab.pdfbase.pdfdoc import format as pdfdoc_format
from reportlab.pdfbase.ttfonts import TTFont, TTFontFace
from reportlab.pdfgen.canvas import Canvas

from contracts.errors import ConfigurationError
from contracts.messages import NoticeDecision

_Value = TypeVar("_Value")

# reportlab escapes every PDF name character by character, and encodes every token of
# every object through a codec written in Python: both pure, over a few hundred names and
# tokens that recur from notice to notice. Process-wide, and notices are the only PDFs
# made. Bytes pass through unencoded, and are not kept.
pdfdoc.PDFName = lru_cache(maxsize=None)(pdfdoc.PDFName)
_pdfdoc_encoded = lru_cache(maxsize=4096)(pdfdoc.pdfdocEnc)


def _pdfdoc_encoding(x: str | _Value) -> bytes | _Value:  # reportlab's signature
    return _pdfdoc_encoded(x) if isinstance(x, str) else x


pdfdoc.pdfdocEnc = _pdfdoc_encoding

REMEDY = (
    "如不服本决定，可以自收到本决定书之日起六十日内依法申请行政复议，"
    "或者自知道或者应当知道作出本决定之日起六个月内依法向人民法院提起行政诉讼。"
)
TITLES = {NoticeDecision.ACCEPTED: "受理通知书", NoticeDecision.REJECTED: "不予受理决定书"}


@dataclass(frozen=True)
class NoticeFacts:
    """Everything the document states."""

    decision: NoticeDecision
    department_name_zh: str
    item_name_zh: str
    bundle_name_zh: str
    project_no: str
    receipt_no: str | None
    applicant_name: str
    applied_on: date
    decided_on: date
    reason: str | None
    legal_basis: str
    promise_days: int | None
    decide_by: date | None

    @property
    def title(self) -> str:
        return TITLES[self.decision]

    def paragraphs(self) -> list[str]:
        applied = (
            f"你（单位）于{chinese_date(self.applied_on)}"
            f"通过“一件事一次办”（{self.bundle_name_zh}）"
        )
        if self.decision is NoticeDecision.ACCEPTED:
            text = [
                f"{applied}提出的“{self.item_name_zh}”申请，经审查，申请事项属于本机关职权范围，"
                "申请材料齐全、符合法定形式，决定予以受理。",
                f"依据：{self.legal_basis}。",
            ]
            if self.promise_days is not None:
                by = (
                    f"，本机关将于{chinese_date(self.decide_by)}前作出决定"
                    if self.decide_by
                    else ""
                )
                text.append(
                    f"本事项承诺办结时限为{self.promise_days}个工作日，自受理之日起计算{by}"
                    "（补齐补正、听证、鉴定等所需时间不计算在内）。"
                )
            text.append("办理进度可凭办件编号在省一体化政务服务平台查询。")
            return text
        return [
            f"{applied}提出的“{self.item_name_zh}”申请，经审查，决定不予受理。",
            f"不予受理的理由：{self.reason}",
            f"依据：{self.legal_basis}。",
            REMEDY,
            "本决定书由政务服务中心（便民服务中心）发证窗口送达。",
        ]


class NoticeRenderer:
    """Renders notices with one embedded CJK font (a TrueType file or collection)."""

    _fonts: ClassVar[dict[Path, TTFont]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, font_file: Path) -> None:
        if not font_file.is_file():
            raise ConfigurationError(
                f"no notice font at {font_file}: install fonts-wqy-microhei, or point "
                "LIANBAN_NOTICE_FONT_FILE at a CJK TrueType font (.ttf or .ttc)"
            )
        with self._lock:  # reportlab's font registry is process-wide
            if font_file not in self._fonts:
                font = TTFont(f"notice-{font_file.stem}", _MappedFile(font_file), subfontIndex=0)
                drop_what_subsets_do_not_read(font.face)
                slice_glyphs_in_place(font.face)
                remember_subsets(font.face)
                remember_font_objects(font)
                pdfmetrics.registerFont(font)
                self._fonts[font_file] = font
            rl_config.useA85 = 0  # read as each stream is written; the only PDFs made here
        self._font = self._fonts[font_file]

    def render(self, facts: NoticeFacts) -> bytes:
        buffer = io.BytesIO()
        # Starting in the notice's font keeps Helvetica, which nothing uses, out of the file.
        canvas = Canvas(
            buffer,
            pagesize=A4,
            invariant=True,
            initialFontName=self._font.fontName,  # type: ignore[arg-type]  # stubs: a number
        )
        canvas.setTitle(f"{facts.title} {facts.project_no}")
        canvas.setAuthor(facts.department_name_zh)
        self._place_fixed_wording(canvas, facts.decision)
        _Page(canvas, self._font).write(_blocks(facts))
        canvas.save()
        return buffer.getvalue()

    def _place_fixed_wording(self, canvas: Canvas, decision: NoticeDecision) -> None:
        """Before anything is drawn: the fixed wording's characters fill the first subset,
        and the notice's own characters start the next. They are placed once per decision;
        each notice starts from a copy of the font's state then."""
        placed = fixed_wording_placed(self._font, decision)
        state = copy.copy(placed)
        state.assignments = dict(placed.assignments)  # type: ignore[attr-defined]
        state.subsets = [list(subset) for subset in placed.subsets]
        self._font.state[canvas._doc] = state  # type: ignore[attr-defined]  # stubs omit it


@lru_cache
def fixed_wording_placed(font: TTFont, decision: NoticeDecision) -> TTFont.State:
    """The font's state in a document that has placed only the fixed wording of
    `decision`, its next character starting a new subset."""
    document = PDFDocument()
    font.splitString(fixed_wording(decision), document)
    state = font.state.pop(document)
    state.nextCode = -(-state.nextCode // SUBSET_SIZE) * SUBSET_SIZE
    return state


@dataclass(frozen=True)
class _Style:
    size: float
    align: Literal["left", "center", "right"] = "left"
    first_line_indent: float = 0
    space_before: float = 0

    @property
    def leading(self) -> float:
        return self.size * 1.7


HEADING = _Style(16, "center")
TITLE = _Style(22, "center", space_before=6)
NUMBERS = _Style(10.5, "right")
SALUTATION = _Style(12)
BODY = _Style(12, first_line_indent=24)
SIGNATURE = _Style(12, "right")


@dataclass(frozen=True)
class _Paragraph:
    style: _Style
    text: str


_Block = _Paragraph | float
"""A paragraph, or a vertical space in points."""


def _blocks(facts: NoticeFacts) -> list[_Block]:
    return [
        _Paragraph(HEADING, facts.department_name_zh),
        _Paragraph(TITLE, facts.title),
        6 * mm,
        *(_Paragraph(NUMBERS, number) for number in _numbers(facts)),
        6 * mm,
        _Paragraph(SALUTATION, _salutation(facts.applicant_name)),
        *(_Paragraph(BODY, text) for text in facts.paragraphs()),
        14 * mm,
        _Paragraph(SIGNATURE, facts.department_name_zh),
        _Paragraph(SIGNATURE, chinese_date(facts.decided_on)),
    ]


# The text's box on the page: the margins, and 6 pt of padding inside them (the look the
# notices had when Platypus laid them out).
LEFT = 28 * mm + 6
RIGHT = A4[0] - 26 * mm - 6
TOP = A4[1] - 30 * mm - 6
BOTTOM = 30 * mm + 6


class _Page:
    """Draws blocks top down on the canvas, wrapping each paragraph into lines as
    Platypus's CJK word wrap does (reportlab's dumbSplit: a break may fall between any
    two CJK characters, closing punctuation hangs, a Latin run is kept whole where it
    can be), onto a new page when one is full. Straight canvas text, without Platypus's
    markup parsing and flowable layout: a notice is a few fixed paragraphs."""

    def __init__(self, canvas: Canvas, font: TTFont) -> None:
        self._canvas = canvas
        self._font = font
        self._text = canvas.beginText()
        self._y = TOP
        self._at_top = True

    def write(self, blocks: list[_Block]) -> None:
        for block in blocks:
            if isinstance(block, _Paragraph):
                self._paragraph(block.style, " ".join(block.text.split()))
            elif not self._at_top:
                self._y -= block
        self._canvas.drawText(self._text)
        self._canvas.showPage()

    def _paragraph(self, style: _Style, text: str) -> None:
        if not self._at_top:
            self._y -= style.space_before
        self._text.setFont(self._font.fontName, style.size, style.leading)
        for number, (spare, line) in enumerate(wrapped(self._font, style, text)):
            if self._y - style.leading < BOTTOM and not self._at_top:
                self._next_page()
                self._text.setFont(self._font.fontName, style.size, style.leading)
            x = LEFT + (style.first_line_indent if number == 0 else 0)
            if style.align == "right":
                x += spare
            elif style.align == "center":
                x += spare / 2
            self._text.setTextOrigin(x, self._y - style.size)
            # Each line is placed at its own origin: reportlab's textOut would also measure
            # it to advance the cursor, which no line starts from.
            self._text._textOut(line)  # type: ignore[attr-defined]  # stubs omit it
            self._y -= style.leading
            self._at_top = False

    def _next_page(self) -> None:
        self._canvas.drawText(self._text)
        self._canvas.showPage()
        self._text = self._canvas.beginText()
        self._y, self._at_top = TOP, True


@lru_cache(maxsize=256)
def wrapped(font: TTFont, style: _Style, text: str) -> tuple[tuple[float, str], ...]:
    """The lines `text` is broken into, each with its width to spare. Kept: most of a
    notice's paragraphs (its heading, title, legal basis, closing) recur in others."""
    width_of, default_width = font.face.charWidths.get, font.face.defaultWidth
    scale = style.size / 1000
    widths = [width_of(ord(char), default_width) * scale for char in text]
    first_width = RIGHT - LEFT - style.first_line_indent
    return tuple(
        (spare, line) for spare, line in dumbSplit(text, widths, [first_width, RIGHT - LEFT])
    )


# Codes in one embedded subset of the font.
SUBSET_SIZE = 256
# How many subsets the font keeps made: the two decisions' fixed wording, asked for by
# every notice, stay; the notices' own ones come and go.
SUBSETS_KEPT = 16


def remember_subsets(face: TTFontFace) -> None:
    """Make and compress each distinct subset of `face` once (reportlab has no hook for
    it: its font file stream is given the compressed bytes, which it then leaves as
    they are)."""
    make, add = face.makeSubset, face.addSubsetObjects
    made = lru_cache(maxsize=SUBSETS_KEPT)(lambda codes: make(list(codes)))
    compressed = lru_cache(maxsize=SUBSETS_KEPT)(lambda codes: zlib.compress(made(codes)))

    def add_compressed(pdf: PDFDocument, name: str, subset: list[int]) -> object:
        descriptor = add(pdf, name, subset)  # type: ignore[no-untyped-call]
        if pdf.compression:
            stream = cast(PDFStream, pdf.idToObject[f"fontFile:{face.filename}({name})"])
            stream.content = compressed(tuple(subset))
            stream.dictionary["Filter"] = PDFArray([PDFName("FlateDecode")])
        return descriptor

    face.makeSubset = lambda subset: made(tuple(subset))  # type: ignore[method-assign]
    face.addSubsetObjects = add_compressed  # type: ignore[method-assign]


@dataclass(frozen=True)
class _MappedFile:
    """The font file as reportlab reads it (`name`, `read()`), mapped instead of read:
    only the pages parsed or cut into subsets are resident, and they are the page
    cache's (a CJK font is megabytes, most of it glyphs no notice uses)."""

    path: Path

    @property
    def name(self) -> str:  # reportlab names the subsets' font file objects after it
        return str(self.path)

    def read(self) -> mmap.mmap:
        with self.path.open("rb") as file:
            return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)


def drop_what_subsets_do_not_read(face: TTFontFace) -> None:
    """reportlab keeps every glyph's offset (loca) as a list of Python numbers, and a
    glyph-to-characters map only its text shaping reads: about 5 MiB of objects for a
    CJK font. The offsets are kept as an array (about 200 KiB), as fast to index. (The
    advances, read once a glyph, stay a list: read from the file instead they would save
    about 2 MiB for 2% more instructions a notice.)"""
    face.glyphPos = array("I", face.glyphPos)
    del face.glyphToChar  # type: ignore[attr-defined]


def slice_glyphs_in_place(face: TTFontFace) -> None:
    """reportlab's makeSubset takes the font's glyph table whole, a copy of megabytes for
    a CJK font, to cut out the subset's few glyphs: give it a view on the font file that
    copies only what is cut out (a notice naming a new applicant makes a new subset)."""
    get_table = face.get_table
    start, _length = face.get_table_pos("glyf")
    glyphs = _TableView(face._ttf_data, start)  # type: ignore[attr-defined]

    def table(tag: str) -> object:
        return glyphs if tag == "glyf" else get_table(tag)  # type: ignore[no-untyped-call]

    face.get_table = table  # type: ignore[method-assign]


@dataclass(frozen=True)
class _TableView:
    """A table of a font file, sliced as the table itself would be."""

    font_file: mmap.mmap
    start: int

    def __getitem__(self, part: slice) -> bytes:
        return self.font_file[self.start + part.start : self.start + part.stop]


_Objects = tuple[tuple[str, bytes], ...]
"""A subset's objects, as (name, bytes) in the order they are numbered."""


def remember_font_objects(font: TTFont) -> None:
    """Write out each distinct subset's objects (its font dictionary with the widths, its
    descriptor, font file and ToUnicode map) once: the fixed wording's subset recurs in
    every notice under the same names and object numbers, and making and formatting its
    objects (a few hundred widths, a deflated map) was a good part of writing the PDF.
    When every subset of a notice was written before, reportlab makes none of them."""
    add_objects = font.addObjects
    # A subset's objects by what they depend on: its characters, its font's name, the
    # number they start at, compression.
    written: dict[Hashable, _Objects] = {}  # oldest use first

    def add_remembered(pdf: PDFDocument) -> None:
        state = font.state[pdf]
        subsets = [
            (tuple(codes), font.getSubsetInternalName(number, pdf)[1:])
            for number, codes in enumerate(state.subsets)
        ]
        first, known = pdf.objectcounter + 1, []
        for codes, font_name in subsets:
            key = (codes, font_name, first, pdf.compression)
            if key not in written:
                break
            known.append(key)
            first += len(written[key])
        else:
            # What reportlab's addObjects would do, with the objects written already.
            fonts = cast(PDFDictionary, pdf.idToObject[BasicFonts]).dict
            for key, (_codes, font_name) in zip(known, subsets, strict=True):
                for name, data in _remember(written, key, written[key]):
                    pdf.Reference(_Formatted(data), name)  # type: ignore[no-untyped-call]
                fonts[font_name] = PDFObjectReference(font_name)
            del font.state[pdf]
            return
        add_objects(pdf)
        number_of = pdf.idToObjectNumberAndVersion
        for codes, font_name in subsets:
            names = sorted(_subset_objects(pdf, font_name), key=number_of.__getitem__)
            key = (codes, font_name, number_of[names[0]][0], pdf.compression)
            objects = written.get(key) or tuple(
                (name, pdfdoc_format(pdf.idToObject[name], pdf, toplevel=1)) for name in names
            )
            for name, data in _remember(written, key, objects):
                pdf.idToObject[name] = _Formatted(data)

    font.addObjects = add_remembered  # type: ignore[method-assign, assignment]


def _remember(written: dict[Hashable, _Objects], key: Hashable, objects: _Objects) -> _Objects:
    """`objects`, kept under `key` as the most recently used of SUBSETS_KEPT."""
    written.pop(key, None)
    written[key] = objects
    if len(written) > SUBSETS_KEPT:
        del written[next(iter(written))]
    return objects


def _subset_objects(pdf: PDFDocument, font_name: str) -> tuple[str, ...]:
    """The names of the objects reportlab made for one subset."""
    references = vars(pdf.idToObject[font_name])  # attributes the stubs do not know
    descriptor = references["FontDescriptor"].name
    font_file = cast(PDFDictionary, pdf.idToObject[descriptor]).dict["FontFile2"].name
    return (font_name, references["ToUnicode"].name, descriptor, font_file)


class _Formatted(PDFObject):
    """A PDF value written out already."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def format(self, _document: PDFDocument) -> bytes:
        return self.data


@lru_cache
def fixed_wording(decision: NoticeDecision) -> str:
    """Every character a notice of `decision` prints whatever it says (ASCII aside: it
    keeps its own codes), once each, in a fixed order."""
    day = date(2000, 1, 1)
    blank = NoticeFacts(decision, "", "", "", "", "-", "", day, day, "", "", 1, day)
    text = "".join([blank.title, *_numbers(blank), _salutation(""), *blank.paragraphs()])
    return "".join(sorted({char for char in text if not char.isascii()}))


def _numbers(facts: NoticeFacts) -> list[str]:
    numbers = [f"办件编号：{facts.project_no}"]
    if facts.receipt_no:
        numbers.append(f"受理编号：{facts.receipt_no}")
    return numbers


def _salutation(applicant: str) -> str:
    return f"{applicant}："


def chinese_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"
