"""EPUB (EbookLib): the chapters in reading (spine) order, each parsed as HTML."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

from ingest.parsers.base import ParsedDocument, ParseError
from ingest.parsers.html import html_units


def parse_epub(path: Path) -> ParsedDocument:
    import ebooklib
    from ebooklib import epub

    if not zipfile.is_zipfile(path):
        raise ParseError("the file is not a valid EPUB book (damaged or a different format)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EbookLib warns about future defaults on every read
            book = epub.read_epub(str(path), options={"ignore_ncx": True})
    except Exception as exc:
        raise ParseError("the EPUB book is damaged and cannot be opened") from exc
    units = []
    for item_id, _linear in book.spine:
        item = book.get_item_with_id(item_id)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        _, chapter_units = html_units(item.get_content())
        units.extend(chapter_units)
    titles = book.get_metadata("DC", "title")
    title = titles[0][0] if titles else None
    return ParsedDocument(units, "epub", title=title)
