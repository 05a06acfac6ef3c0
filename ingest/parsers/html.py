"""HTML (also the chapters of EPUB and HTML e-mail bodies): visible text with h1-h6 as heading path.

Inline XBRL filings (10-K .htm) are HTML with `ix:` tags: their hidden `ix:header`
holds machine facts, not prose, and is dropped like scripts and navigation.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from bs4 import (
    BeautifulSoup,
    Comment,
    Declaration,
    Doctype,
    NavigableString,
    ProcessingInstruction,
    Tag,
    XMLParsedAsHTMLWarning,
)

from ingest.parsers.base import HeadingTracker, ParsedDocument, TextUnit

_DROP_TAGS = ["script", "style", "noscript", "template", "nav", "svg", "head", "iframe", "object", "ix:header", "button"]
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
# Elements that end a paragraph (everything else is inline and flows into the current one).
_BLOCKS = {
    "p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote", "pre",
    "ul", "ol", "li", "dl", "dt", "dd", "table", "form", "fieldset", "figure", "figcaption",
    "address", "details", "summary", "hr", "body", "html", "center", "caption",
}
_HIDDEN_STYLE_RE = re.compile(r"display\s*:\s*none", re.IGNORECASE)
_SPACE_RE = re.compile(r"[ \t\r\n\f\v\u00a0\u200b]+")
_RUN_OF_SPACES_RE = re.compile(r" {2,}")
_CELL_GAP_RE = re.compile(r" *\t[ \t]*")
_SKIP_STRINGS = (Comment, Declaration, Doctype, ProcessingInstruction)


def parse_html(path: Path) -> ParsedDocument:
    title, units = html_units(path.read_bytes())
    return ParsedDocument(units, "html", title=title)


def html_units(markup: bytes | str) -> tuple[str | None, list[TextUnit]]:
    """(title, units) of an HTML document."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)  # XHTML (EPUB, iXBRL) is fine as HTML
        soup = BeautifulSoup(markup, "lxml")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else None
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    for tag in soup.find_all(style=_HIDDEN_STYLE_RE):
        tag.decompose()
    tracker = HeadingTracker()
    _Walker(tracker).walk(soup)
    return title, tracker.close()


class _Walker:
    """Iterative walk (deeply nested pages would overflow Python's recursion limit)."""

    def __init__(self, tracker: HeadingTracker):
        self.tracker = tracker
        self.lines: list[str] = []
        self.line: list[str] = []
        self.cell_depth = 0  # inside a table cell, paragraphs flow into the cell's line

    def _end_line(self) -> None:
        # Empty spacer cells (common in filings) would leave runs of tabs.
        text = _CELL_GAP_RE.sub("\t", _RUN_OF_SPACES_RE.sub(" ", "".join(self.line))).strip(" \t")
        if text.strip():
            self.lines.append(text)
        self.line = []

    def _end_paragraph(self) -> None:
        self._end_line()
        if self.lines:
            self.tracker.text("\n".join(self.lines))
        self.lines = []

    def walk(self, root: Tag) -> None:
        stack: list[tuple[Tag | NavigableString, bool]] = [(root, False)]
        while stack:
            node, leaving = stack.pop()
            if isinstance(node, NavigableString):
                if not isinstance(node, _SKIP_STRINGS):
                    self.line.append(_SPACE_RE.sub(" ", str(node)))
                continue
            name = node.name
            if leaving:
                if name in ("td", "th"):
                    self.cell_depth -= 1
                    self.line.append("\t")
                elif self.cell_depth and name in _BLOCKS:
                    self.line.append(" ")
                elif name == "tr":
                    self._end_line()
                elif name in _BLOCKS:
                    self._end_paragraph()
                continue
            if name in _HEADINGS:
                self._end_paragraph()
                self.tracker.heading(_HEADINGS[name], node.get_text(" "))
                continue
            if name == "br":
                if self.cell_depth:
                    self.line.append(" ")
                else:
                    self._end_line()
                continue
            if name == "pre":
                self._end_paragraph()
                self.tracker.text(node.get_text())
                continue
            if name in ("td", "th"):
                self.cell_depth += 1
            elif self.cell_depth and name in _BLOCKS:
                self.line.append(" ")
            elif name in _BLOCKS:
                self._end_paragraph()
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(node.contents))
        self._end_paragraph()
