"""File parsers: `parse(path)` picks one by extension and returns a `ParsedDocument`.

Every failure comes out as `ParseError` with a one-sentence reason, so one bad file
never stops a run and never reaches the user as a stack trace.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ingest.parsers.base import ParsedDocument, ParseError, TextUnit, finish
from ingest.parsers.doc import parse_doc
from ingest.parsers.epub import parse_epub
from ingest.parsers.html import parse_html
from ingest.parsers.mail import parse_eml, parse_msg
from ingest.parsers.office import parse_docx, parse_odt, parse_pptx, parse_xlsx
from ingest.parsers.pdf import parse_pdf
from ingest.parsers.text import parse_markdown, parse_txt
from rag.settings import Settings, get_settings

__all__ = ["PARSERS", "ParseError", "ParsedDocument", "TextUnit", "is_supported", "parse", "require_supported"]

PARSERS: dict[str, Callable[[Path], ParsedDocument]] = {
    ".pdf": parse_pdf,
    ".docx": parse_docx,
    ".pptx": parse_pptx,
    ".xlsx": parse_xlsx,  # also needs the row limit: see parse()
    ".odt": parse_odt,
    ".doc": parse_doc,
    ".html": parse_html,
    ".htm": parse_html,
    ".xhtml": parse_html,
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".txt": parse_txt,
    ".text": parse_txt,
    ".rst": parse_txt,
    ".csv": parse_txt,
    ".tsv": parse_txt,
    ".log": parse_txt,
    ".eml": parse_eml,
    ".msg": parse_msg,
    ".epub": parse_epub,
}


def is_supported(path: Path | str) -> bool:
    return Path(path).suffix.lower() in PARSERS


def require_supported(path: Path) -> None:
    """Raise `ParseError` when no parser handles this file's extension."""
    if not is_supported(path):
        kind = f"'{path.suffix}'" if path.suffix else "without an extension"
        raise ParseError(f"files {kind} are not supported")


def parse(path: Path | str, settings: Settings | None = None) -> ParsedDocument:
    """Parse one file into text units, or raise `ParseError` saying why not.

    Size limits are checked by discovery (`ingest.discovery.check_file`) before this.
    """
    path = Path(path)
    require_supported(path)
    parser = PARSERS[path.suffix.lower()]
    try:
        if path.stat().st_size == 0:
            raise ParseError("the file is empty")
        if parser is parse_xlsx:
            document = parse_xlsx(path, max_rows=(settings or get_settings()).max_sheet_rows)
        else:
            document = parser(path)
    except ParseError:
        raise
    except PermissionError as exc:
        raise ParseError("the file cannot be read (permission denied)") from exc
    except FileNotFoundError as exc:
        raise ParseError("the file no longer exists") from exc
    except OSError as exc:
        raise ParseError(f"the file cannot be read ({exc.strerror or exc})") from exc
    except (MemoryError, RecursionError) as exc:
        raise ParseError("the file is too large or too deeply nested to parse") from exc
    except Exception as exc:  # a parser library choked: report it for this file and carry on
        kind = path.suffix.lstrip(".").upper()
        raise ParseError(f"the {kind} file is damaged or uses features that cannot be parsed ({type(exc).__name__})") from exc
    return finish(document)
