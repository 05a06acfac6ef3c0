"""E-mail: RFC 822 .eml (stdlib email) and Outlook .msg (extract-msg): headers plus the body."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

from ingest.parsers.base import ParsedDocument, ParseError, TextUnit
from ingest.parsers.html import html_units

_HEADERS = ("From", "To", "Cc", "Date", "Subject")


def _header_block(values: dict[str, object]) -> str:
    # Outlook leaves placeholders such as "<>" in empty address fields.
    return "\n".join(
        f"{name}: {value}" for name, value in values.items() if value and any(c.isalnum() for c in str(value))
    )


def _document(headers: dict[str, object], plain: str | None, html: bytes | str | None, kind: str) -> ParsedDocument:
    subject = str(headers.get("Subject") or "").strip() or None
    heading = [subject] if subject else []
    units = [TextUnit(_header_block(headers), None, heading)]
    if plain and plain.strip():
        units.append(TextUnit(plain, None, heading))
    elif html:
        _, body_units = html_units(html)
        units.extend(TextUnit(u.text, None, heading + u.heading_path) for u in body_units)
    return ParsedDocument(units, kind, title=subject)


def parse_eml(path: Path) -> ParsedDocument:
    with path.open("rb") as handle:
        message = email.message_from_binary_file(handle, policy=policy.default)
    if not any(message.get(h) for h in ("From", "To", "Subject", "Date", "Message-ID")):
        raise ParseError("the file is not an e-mail message (no mail headers found)")
    headers = {h: message.get(h) for h in _HEADERS}
    plain = html = None
    try:
        part = message.get_body(preferencelist=("plain",))
        plain = part.get_content() if part is not None else None
        if not plain:
            part = message.get_body(preferencelist=("html",))
            html = part.get_content() if part is not None else None
    except (LookupError, UnicodeError) as exc:  # unknown or broken charset
        raise ParseError("the e-mail body uses a character set that cannot be decoded") from exc
    return _document(headers, plain, html, "eml")


def parse_msg(path: Path) -> ParsedDocument:
    import extract_msg

    try:
        message = extract_msg.openMsg(str(path))
    except Exception as exc:
        raise ParseError("the file is not a readable Outlook message (damaged or a different format)") from exc
    try:
        headers = {
            "From": message.sender,
            "To": message.to,
            "Cc": getattr(message, "cc", None),
            "Date": message.date,
            "Subject": message.subject,
        }
        plain = message.body
        html = None if plain and plain.strip() else message.htmlBody
    except Exception as exc:
        raise ParseError("the Outlook message is damaged and its body cannot be read") from exc
    finally:
        message.close()
    return _document(headers, plain, html, "msg")
