"""What every parser returns, the error it raises, and the checks they share.

A parser turns one file into `TextUnit`s: pieces of text that carry their own page
(PDF page, PPTX slide, XLSX sheet) and heading path. The chunker splits inside a unit
and never across two, so a chunk's citation is exact.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

# Below this share of real characters the "text" is binary junk (fonts without a
# Unicode map, a binary file decoded as text) and must not be indexed.
MIN_TEXT_QUALITY = 0.95
_JUNK_CATEGORIES = {"Cc", "Co", "Cn", "Cs"}  # control, private use, unassigned, surrogate
_ALLOWED_CONTROLS = {"\n", "\t"}


class ParseError(Exception):
    """A file that cannot be indexed, with the reason in one plain sentence."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class TextUnit:
    text: str
    page: int | None = None  # 1-based PDF page / PPTX slide / XLSX sheet; None when unpaged
    heading_path: list[str] = field(default_factory=list)


@dataclass
class ParsedDocument:
    units: list[TextUnit]
    format: str  # the parser family, e.g. "pdf", "docx"
    title: str | None = None
    pages: int | None = None  # pages / slides / sheets; None for unpaged formats
    warnings: list[str] = field(default_factory=list)  # e.g. rows left out of a huge sheet

    @property
    def text_length(self) -> int:
        return sum(len(u.text) for u in self.units)


_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TRAILING_SPACE_RE = re.compile(r"[ \t\u00a0]+\n")
_MANY_BLANK_LINES_RE = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """Normalise line ends and whitespace runs; drop control characters (never meaningful text)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n\n")
    text = text.replace("\u00ad", "")  # soft hyphens split words for the tokenizer
    text = _CONTROL_RE.sub("", text)
    text = _TRAILING_SPACE_RE.sub("\n", text)
    text = _MANY_BLANK_LINES_RE.sub("\n\n", text)
    return text.strip()


def text_quality(text: str) -> float:
    """Share of characters that are real text (not control, private-use or unassigned code points)."""
    sample = text[:200_000]
    if not sample:
        return 1.0
    junk = sum(
        1
        for ch in sample
        if ch == "\ufffd"
        or (ch not in _ALLOWED_CONTROLS and unicodedata.category(ch) in _JUNK_CATEGORIES)
    )
    return 1.0 - junk / len(sample)


def finish(doc: ParsedDocument) -> ParsedDocument:
    """Clean every unit, drop empty ones, and refuse documents without real text."""
    units = []
    for unit in doc.units:
        text = clean_text(unit.text)
        if text:
            units.append(TextUnit(text, unit.page, [h.strip() for h in unit.heading_path if h.strip()]))
    if not units:
        raise ParseError("the file contains no text to index")
    quality = text_quality("\n".join(u.text for u in units))
    if quality < MIN_TEXT_QUALITY:
        raise ParseError(
            f"the extracted text looks like binary data ({quality:.0%} readable characters), "
            "so it is not indexed"
        )
    doc.units = units
    if doc.title:
        doc.title = " ".join(doc.title.split())[:300] or None
    return doc


class HeadingTracker:
    """Turns a stream of headings and text blocks into units that carry their heading path.

    Used by every format with headings (DOCX, HTML, Markdown, EPUB, ODT): feed it
    `heading(level, text)` and `text(block)`, then take `units`.
    """

    def __init__(self, page: int | None = None):
        self.page = page
        self.path: list[tuple[int, str]] = []
        self.units: list[TextUnit] = []
        self._blocks: list[str] = []

    def _flush(self) -> None:
        body = "\n\n".join(b for b in self._blocks if b.strip())
        if body.strip():
            self.units.append(TextUnit(body, self.page, [t for _, t in self.path]))
        self._blocks = []

    def heading(self, level: int, title: str) -> None:
        title = " ".join(title.split())
        if not title:
            return
        self._flush()
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        self.path.append((level, title))
        # The heading text itself is content too (it is often the best match for a query).
        self._blocks.append(title)

    def text(self, block: str) -> None:
        if block and block.strip():
            self._blocks.append(block)

    def close(self) -> list[TextUnit]:
        self._flush()
        return self.units
