"""A PDF or an image upload is parsed as a whole before it is kept, not judged by its
first bytes: a PDF header followed by HTML or an executable is refused, as is an image
whose header is followed by anything but image data.

The file is read from its spool file, never loaded whole: pypdf follows the cross-
reference table through the open file, and Pillow reads an image's structure without
decoding its pixels (a decompression bomb is refused by its declared size).

pypdf and Pillow are imported by the first check: a process that keeps no uploads (an
adapter, the correlator) never loads them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

_IMAGE_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/tiff": "TIFF"}


def document_problem(path: Path, media_type: str) -> str | None:
    """What keeps the file at `path` from being a `media_type` document, or None."""
    if media_type == "application/pdf":
        return _pdf_problem(path)
    if media_type in _IMAGE_FORMATS:
        return _image_problem(path, _IMAGE_FORMATS[media_type])
    return None


def _pdf_problem(path: Path) -> str | None:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        with path.open("rb") as file, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pypdf warns of what it repairs
            pages = len(PdfReader(file).pages)
    except (PyPdfError, ValueError, KeyError, TypeError, RecursionError):
        return "is not a PDF that can be read"
    return None if pages else "is a PDF without pages"


def _image_problem(path: Path, expected: str) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=[expected]) as image:
                image.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "declares more pixels than an image may have"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return f"is not a {expected} image that can be read"
    return None
