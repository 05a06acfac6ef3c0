"""Office formats: DOCX (python-docx), PPTX (python-pptx), XLSX (openpyxl), ODT (odfpy)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from ingest.parsers.base import HeadingTracker, ParsedDocument, ParseError, TextUnit

_HEADING_STYLE_RE = re.compile(r"^heading\s*(\d)", re.IGNORECASE)


def _require_zip(path: Path, kind: str) -> None:
    """Office files are zip packages; say so plainly when this one is not."""
    if zipfile.is_zipfile(path):
        return
    if _is_encrypted_office(path):  # a password turns the package into an OLE container
        raise ParseError(f"the {kind} document is password protected")
    raise ParseError(f"the file is not a valid {kind} document (damaged or a different format)")


def _is_encrypted_office(path: Path) -> bool:
    import olefile

    if not olefile.isOleFile(str(path)):
        return False
    with olefile.OleFileIO(str(path)) as ole:
        return ole.exists("EncryptionInfo") and ole.exists("EncryptedPackage")


# --- DOCX -------------------------------------------------------------------
def parse_docx(path: Path) -> ParsedDocument:
    import docx
    from docx.table import Table

    _require_zip(path, "DOCX")
    try:
        document = docx.Document(str(path))
    except Exception as exc:
        raise ParseError("the DOCX document is damaged and cannot be opened") from exc
    tracker = HeadingTracker()
    first_heading = None
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            tracker.text(_docx_table_text(item))
            continue
        text = item.text
        level = _docx_heading_level(item.style.name if item.style is not None else "")
        if level:
            tracker.heading(level, text)
            first_heading = first_heading or text.strip()
        else:
            tracker.text(text)
    title = document.core_properties.title or first_heading
    return ParsedDocument(tracker.close(), "docx", title=title)


def _docx_heading_level(style_name: str) -> int:
    if style_name.lower() == "title":
        return 1
    match = _HEADING_STYLE_RE.match(style_name)
    return int(match.group(1)) if match else 0


def _docx_table_text(table) -> str:
    """One line per row, cells separated by tabs; merged cells appear once."""
    lines = []
    for row in table.rows:
        cells: list[str] = []
        seen = set()
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            lines.append("\t".join(cells))
    return "\n".join(lines)


# --- PPTX -------------------------------------------------------------------
def parse_pptx(path: Path) -> ParsedDocument:
    from pptx import Presentation

    _require_zip(path, "PPTX")
    try:
        presentation = Presentation(str(path))
    except Exception as exc:
        raise ParseError("the PPTX presentation is damaged and cannot be opened") from exc
    units = []
    first_title = None
    for number, slide in enumerate(presentation.slides, start=1):
        title_shape = slide.shapes.title
        title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None and title_shape.has_text_frame else ""
        first_title = first_title or title or None
        parts = [title] if title else []
        for shape in slide.shapes:
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            parts.extend(_shape_texts(shape))
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                parts.append(notes.text)
        units.append(TextUnit("\n\n".join(p for p in parts if p.strip()), number, [title] if title else []))
    title = presentation.core_properties.title or first_title
    return ParsedDocument(units, "pptx", title=title, pages=len(presentation.slides))


def _shape_texts(shape) -> list[str]:
    if shape.shape_type is not None and getattr(shape, "shapes", None) is not None:  # a group
        return [t for child in shape.shapes for t in _shape_texts(child)]
    if getattr(shape, "has_table", False) and shape.has_table:
        rows = ["\t".join(" ".join(c.text.split()) for c in row.cells) for row in shape.table.rows]
        return ["\n".join(r for r in rows if r.strip())]
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        return [shape.text_frame.text]
    return []


# --- XLSX -------------------------------------------------------------------
def parse_xlsx(path: Path, max_rows: int) -> ParsedDocument:
    """Sheets as pages, rows as tab-separated lines; beyond `max_rows` a sheet is data, not
    prose, and embedding it would cost minutes for no useful answer: the rest is a warning."""
    import openpyxl

    _require_zip(path, "XLSX")
    try:
        # read_only streams rows from the XML instead of building every cell object.
        workbook = openpyxl.load_workbook(str(path), read_only=True, data_only=True)
    except Exception as exc:
        raise ParseError("the XLSX workbook is damaged and cannot be opened") from exc
    units, warnings = [], []
    try:
        for number, sheet in enumerate(workbook.worksheets, start=1):
            lines = []
            for rows_seen, row in enumerate(sheet.iter_rows(values_only=True), start=1):
                if rows_seen > max_rows:
                    warnings.append(
                        f"sheet '{sheet.title}': only the first {max_rows} rows were indexed"
                    )
                    break
                cells = ["" if v is None else " ".join(str(v).split()) for v in row]
                while cells and not cells[-1]:
                    cells.pop()
                if cells:
                    lines.append("\t".join(cells))
            units.append(TextUnit("\n".join(lines), number, [sheet.title]))
    except ParseError:
        raise
    except Exception as exc:
        raise ParseError("the XLSX workbook is damaged and its sheets cannot be read") from exc
    finally:
        workbook.close()
    title = workbook.properties.title if workbook.properties else None
    return ParsedDocument(units, "xlsx", title=title, pages=len(units), warnings=warnings)


# --- ODT --------------------------------------------------------------------
def parse_odt(path: Path) -> ParsedDocument:
    from odf import teletype
    from odf.opendocument import load

    _require_zip(path, "ODT")
    try:
        document = load(str(path))
    except Exception as exc:
        raise ParseError("the ODT document is damaged and cannot be opened") from exc
    tracker = HeadingTracker()
    first_heading = None
    # Headings (text:h) and paragraphs (text:p) in document order, tables included.
    for node in _odf_walk(document.body):
        qname = node.qname[1]
        if qname == "h":
            level = int(node.getAttribute("outlinelevel") or 1)
            title = teletype.extractText(node)
            tracker.heading(level, title)
            first_heading = first_heading or title.strip() or None
        elif qname == "p":
            tracker.text(teletype.extractText(node))
    return ParsedDocument(tracker.close(), "odt", title=first_heading)


def _odf_walk(node):
    """Headings and paragraphs in document order (not descending into paragraphs)."""
    for child in node.childNodes:
        if child.nodeType != child.ELEMENT_NODE:
            continue
        if child.qname[1] in ("h", "p"):
            yield child
        else:
            yield from _odf_walk(child)

