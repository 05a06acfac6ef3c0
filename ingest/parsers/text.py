"""Plain text (any charset) and Markdown (ATX and Setext headings, YAML front matter)."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.parsers.base import HeadingTracker, ParsedDocument, ParseError, TextUnit

_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def decode_text(data: bytes) -> str:
    """Bytes of a text file as str: UTF-8 first (the common case, fast), else detected charset."""
    if not data.startswith(_BOMS):
        if b"\x00" in data[:65536]:
            raise ParseError("the file contains binary data, not text")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise ParseError("the text's character encoding could not be recognised (binary data or an unknown charset)")
    return str(best)


def parse_txt(path: Path) -> ParsedDocument:
    return ParsedDocument([TextUnit(decode_text(path.read_bytes()))], "txt")


# --- Markdown ---------------------------------------------------------------
_FRONT_MATTER_RE = re.compile(r"\A---\n(.*?)\n(?:---|\.\.\.)\n", re.DOTALL)
_ATX_RE = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_SETEXT_RE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE_RE = re.compile(r"^ {0,3}(```|~~~)")
# Markup that only adds noise tokens: link targets, images, template tags, HTML comments.
_IMAGE_RE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK_RE = re.compile(r"\[([^\]]+)\]\((?:[^()]|\([^)]*\))*\)")
_TEMPLATE_RE = re.compile(r"\{%.*?%\}|\{\{.*?\}\}", re.DOTALL)
_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
# Inline HTML (allowed in Markdown: <div class=...>, <a href=...>) keeps its text, loses its tags.
_HTML_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")


def parse_markdown(path: Path) -> ParsedDocument:
    text = decode_text(path.read_bytes()).replace("\r\n", "\n")
    title = None
    front = _FRONT_MATTER_RE.match(text)
    if front:
        text = text[front.end() :]
        title = _front_matter_title(front.group(1))
    text = _COMMENT_RE.sub("", _TEMPLATE_RE.sub("", text))
    text = _LINK_RE.sub(r"\1", _IMAGE_RE.sub(r"\1", text))
    tracker = HeadingTracker()
    lines: list[str] = []
    in_fence = False

    def flush() -> None:
        if lines:
            tracker.text("\n".join(lines))
            lines.clear()

    for line in text.split("\n"):
        if _FENCE_RE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            line = _HTML_TAG_RE.sub("", line)
            atx = _ATX_RE.match(line)
            if atx:
                flush()
                tracker.heading(len(atx.group(1)), atx.group(2))
                title = title or atx.group(2).strip()
                continue
            setext = _SETEXT_RE.match(line)
            if setext and lines and lines[-1].strip():
                heading = lines.pop()
                flush()
                tracker.heading(1 if setext.group(1)[0] == "=" else 2, heading)
                title = title or heading.strip()
                continue
        lines.append(line)
    flush()
    return ParsedDocument(tracker.close(), "md", title=title)


def _front_matter_title(front_matter: str) -> str | None:
    import yaml

    try:
        meta = yaml.safe_load(front_matter)
    except yaml.YAMLError:
        return None
    if isinstance(meta, dict) and isinstance(meta.get("title"), str):
        return meta["title"]
    return None
