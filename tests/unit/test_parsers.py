"""Parsers on fixtures generated here: pages, heading paths, reading order, bad input."""

from __future__ import annotations

import email.message
import os
import zipfile

import pymupdf
import pytest

from ingest.parsers import ParseError, parse
from ingest.parsers.base import ParsedDocument, TextUnit, finish

LEFT = ["Alpha one starts the left column here.", "Alpha two continues the left column.",
        "Alpha three ends the left column."]
RIGHT = ["Omega one starts the right column here.", "Omega two continues the right column.",
         "Omega three ends the right column."]


# --- PDF ----------------------------------------------------------------------------------
def _pdf(path, encryption=None, user_pw=None):
    doc = pymupdf.open()
    first = doc.new_page()
    first.insert_text((72, 72), "Introduction page about annual leave.", fontsize=12)
    second = doc.new_page()
    second.insert_textbox(pymupdf.Rect(300, 200, 550, 400), "\n".join(RIGHT), fontsize=10)  # drawn first
    second.insert_textbox(pymupdf.Rect(50, 200, 290, 400), "\n".join(LEFT), fontsize=10)
    second.insert_textbox(pymupdf.Rect(50, 100, 550, 140), "A full width title over both columns", fontsize=14)
    doc.set_toc([[1, "Part One", 1], [2, "Two Columns", 2]])
    kwargs = {}
    if encryption:
        kwargs = {"encryption": encryption, "user_pw": user_pw, "owner_pw": "owner-secret"}
    doc.save(str(path), **kwargs)
    return path


def test_pdf_pages_headings_and_two_column_order(tmp_path):
    doc = parse(_pdf(tmp_path / "a.pdf"))
    assert doc.format == "pdf" and doc.pages == 2
    assert [u.page for u in doc.units] == [1, 2]
    assert doc.units[0].heading_path == ["Part One"]
    assert doc.units[1].heading_path == ["Part One", "Two Columns"]
    text = doc.units[1].text
    positions = [text.index(s) for s in ["A full width title", *LEFT, *RIGHT]]
    assert positions == sorted(positions), text  # title, whole left column, then right column


def test_pdf_encrypted_with_empty_password_opens(tmp_path):
    path = _pdf(tmp_path / "enc.pdf", pymupdf.PDF_ENCRYPT_AES_256, "")
    assert b"/Encrypt" in path.read_bytes()  # really encrypted (PyMuPDF itself opens it silently)
    assert "annual leave" in parse(path).units[0].text


def test_pdf_with_unknown_password_is_refused(tmp_path):
    path = _pdf(tmp_path / "secret.pdf", pymupdf.PDF_ENCRYPT_AES_256, "s3cret")
    with pytest.raises(ParseError, match="password protected"):
        parse(path)


def test_truncated_pdf_is_refused(tmp_path):
    data = _pdf(tmp_path / "full.pdf").read_bytes()
    (tmp_path / "cut.pdf").write_bytes(data[: len(data) // 3])
    with pytest.raises(ParseError, match="not a readable PDF"):
        parse(tmp_path / "cut.pdf")


def test_pdf_without_text_layer_is_refused(tmp_path):
    doc = pymupdf.open()
    doc.new_page().draw_rect(pymupdf.Rect(50, 50, 200, 200), fill=(0, 0, 0))
    doc.save(str(tmp_path / "scan.pdf"))
    with pytest.raises(ParseError, match="no text layer"):
        parse(tmp_path / "scan.pdf")


@pytest.mark.parametrize("name", ["random.pdf", "random.docx", "random.pptx", "random.xlsx", "random.epub",
                                  "random.odt", "random.doc", "random.msg"])
def test_random_bytes_are_refused_with_a_reason(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ParseError) as err:
        parse(path)
    assert len(err.value.reason) > 10 and "\n" not in err.value.reason


# --- Office -------------------------------------------------------------------------------
def test_docx_headings_and_table(tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("Handbook", 1)
    document.add_paragraph("Welcome to the company.")
    document.add_heading("Leave", 2)
    document.add_paragraph("Employees get 30 days.")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([("Kind", "Days"), ("Annual", "30")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_heading("Travel", 2)
    document.add_paragraph("Book trains first.")
    document.save(str(tmp_path / "h.docx"))

    doc = parse(tmp_path / "h.docx")
    by_path = {tuple(u.heading_path): u.text for u in doc.units}
    assert "Welcome to the company." in by_path[("Handbook",)]
    assert "Kind\tDays\nAnnual\t30" in by_path[("Handbook", "Leave")]
    assert "Book trains first." in by_path[("Handbook", "Travel")]
    assert doc.title == "Handbook" and doc.pages is None


def test_password_protected_docx_is_refused(tmp_path):
    import docx
    from msoffcrypto.format.ooxml import OOXMLFile

    document = docx.Document()
    document.add_paragraph("Salaries for next year.")
    document.save(str(tmp_path / "plain.docx"))
    with (tmp_path / "plain.docx").open("rb") as plain, (tmp_path / "locked.docx").open("wb") as locked:
        OOXMLFile(plain).encrypt("s3cret", locked)
    with pytest.raises(ParseError, match="DOCX document is password protected"):
        parse(tmp_path / "locked.docx")


def test_pptx_slides_are_pages_with_titles(tmp_path):
    from pptx import Presentation

    deck = Presentation()
    for title, body in [("Quarterly results", "Revenue grew 12 percent."), ("Outlook", "Hiring continues.")]:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    deck.save(str(tmp_path / "d.pptx"))

    doc = parse(tmp_path / "d.pptx")
    assert doc.pages == 2
    assert [(u.page, u.heading_path) for u in doc.units] == [(1, ["Quarterly results"]), (2, ["Outlook"])]
    assert "Revenue grew 12 percent." in doc.units[0].text


def test_xlsx_sheets_are_pages_and_a_huge_sheet_is_capped(tmp_path, settings):
    import openpyxl

    book = openpyxl.Workbook(write_only=True)  # streams rows: the fixture itself stays small in memory
    small = book.create_sheet("Budget")
    small.append(["Item", "Cost"])
    small.append(["Laptops", 1200])
    big = book.create_sheet("Log")
    for i in range(100_000):
        big.append([i, f"event {i}", i * 2])
    book.save(str(tmp_path / "b.xlsx"))

    capped = settings.model_copy(update={"max_sheet_rows": 5_000})
    doc = parse(tmp_path / "b.xlsx", capped)
    assert doc.pages == 2
    budget, log = doc.units
    assert (budget.page, budget.heading_path) == (1, ["Budget"])
    assert "Item\tCost\nLaptops\t1200" == budget.text
    assert (log.page, log.heading_path) == (2, ["Log"])
    assert log.text.count("\n") == 5_000 - 1  # exactly the cap, streamed, not 100k rows
    assert doc.warnings == ["sheet 'Log': only the first 5000 rows were indexed"]


def test_odt_headings(tmp_path):
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P

    document = OpenDocumentText()
    document.text.addElement(H(outlinelevel=1, text="Policies"))
    document.text.addElement(P(text="Security matters."))
    document.text.addElement(H(outlinelevel=2, text="Passwords"))
    document.text.addElement(P(text="Use a manager."))
    document.save(str(tmp_path / "p.odt"))

    doc = parse(tmp_path / "p.odt")
    assert [(u.heading_path, u.text.splitlines()[-1]) for u in doc.units] == [
        (["Policies"], "Security matters."), (["Policies", "Passwords"], "Use a manager.")]


# --- HTML, Markdown, text -------------------------------------------------------------------
HTML = """<html><head><title>Guide</title><style>p{color:red}</style><script>var secret=1;</script></head>
<body><nav><a href="/">Home</a> | <a href="/x">Menu item</a></nav>
<h1>Guide</h1><p>Intro text.</p>
<h2>Setup</h2><p>Install <b>the</b> tool.</p>
<table><tr><td>Name</td><td>Value</td></tr><tr><td>port</td><td><p>8000</p></td></tr></table>
<h3>Linux</h3><p>Use apt.</p><h2>Usage</h2><p>Run it.</p>
<div style="display:none"><ix:header><ix:hidden>dei:Hidden fact 123</ix:hidden></ix:header></div>
<p>Revenue was <ix:nonFraction name="us-gaap:Revenues">4,200</ix:nonFraction> million.</p>
</body></html>"""


def test_html_heading_path_and_noise_removed(tmp_path):
    (tmp_path / "g.html").write_text(HTML)
    doc = parse(tmp_path / "g.html")
    paths = {tuple(u.heading_path): u.text for u in doc.units}
    assert doc.title == "Guide"
    assert paths[("Guide", "Setup")].startswith("Setup\n\nInstall the tool.")
    assert "Name\tValue\nport\t8000" in paths[("Guide", "Setup")]
    assert paths[("Guide", "Setup", "Linux")] == "Linux\n\nUse apt."
    assert "Revenue was 4,200 million." in paths[("Guide", "Usage")]
    everything = " ".join(u.text for u in doc.units)
    for noise in ("secret", "color:red", "Menu item", "Hidden fact"):
        assert noise not in everything


def test_html_with_only_scripts_has_no_text(tmp_path):
    (tmp_path / "s.html").write_text("<html><head><script>alert(1)</script></head><body><script>x()</script></body></html>")
    with pytest.raises(ParseError, match="no text"):
        parse(tmp_path / "s.html")


def test_markdown_headings_front_matter_and_code(tmp_path):
    (tmp_path / "m.md").write_text(
        "---\ntitle: Travel Guide\n---\nPreface.\n\n# Booking\nUse [the portal](https://example.org/x).\n\n"
        "```\n# not a heading\n<b>kept in code</b>\n```\n\nTrains\n------\n<div class=\"note\">Prefer <a href=\"/t\">trains</a>.</div>\n"
    )
    doc = parse(tmp_path / "m.md")
    assert doc.title == "Travel Guide"
    assert [u.heading_path for u in doc.units] == [[], ["Booking"], ["Booking", "Trains"]]
    assert "Use the portal." in doc.units[1].text and "https" not in doc.units[1].text
    assert "# not a heading\n<b>kept in code</b>" in doc.units[1].text
    assert doc.units[2].text == "Trains\n\nPrefer trains."


def test_latin1_text_is_decoded(tmp_path):
    text = "Le café du coin est très réputé pour sa crème brûlée et son thé à la menthe.\n" * 3
    (tmp_path / "l.txt").write_bytes(text.encode("latin-1"))
    assert parse(tmp_path / "l.txt").units[0].text == text.strip()


def test_binary_named_txt_is_refused(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"\x00\x01\x02binary\x00" * 100)
    with pytest.raises(ParseError, match="binary"):
        parse(tmp_path / "b.txt")


def test_junk_text_is_never_indexed():
    junk = ParsedDocument([TextUnit("".join(chr(0xE000 + i % 500) for i in range(2000)))], "pdf")
    with pytest.raises(ParseError, match="binary data"):
        finish(junk)


# --- E-mail and books ---------------------------------------------------------------------
def test_eml_headers_and_plain_body(tmp_path):
    message = email.message.EmailMessage()
    message["From"] = "Ana <ana@example.org>"
    message["To"] = "team@example.org"
    message["Subject"] = "Offsite plan"
    message.set_content("We meet on Friday at the lake.")
    message.add_alternative("<p>We meet on <b>Friday</b>.</p>", subtype="html")
    (tmp_path / "m.eml").write_bytes(message.as_bytes())

    doc = parse(tmp_path / "m.eml")
    assert doc.title == "Offsite plan"
    assert "From: Ana <ana@example.org>" in doc.units[0].text
    assert doc.units[1].text == "We meet on Friday at the lake."
    assert all(u.heading_path == ["Offsite plan"] for u in doc.units)


def test_eml_html_only_body(tmp_path):
    message = email.message.EmailMessage()
    message["From"] = "ops@example.org"
    message["Subject"] = "Outage"
    message.set_content("<html><body><h1>Status</h1><p>All systems up.</p><script>t()</script></body></html>",
                        subtype="html")
    (tmp_path / "h.eml").write_bytes(message.as_bytes())
    doc = parse(tmp_path / "h.eml")
    assert doc.units[-1].heading_path == ["Outage", "Status"]
    assert "All systems up." in doc.units[-1].text and "t()" not in doc.units[-1].text


def test_epub_chapters(tmp_path):
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("id1")
    book.set_title("Field Manual")
    book.set_language("en")
    chapters = []
    for i, (title, body) in enumerate([("Tents", "Pitch tents on flat ground."), ("Fires", "Never leave fires.")]):
        chapter = epub.EpubHtml(title=title, file_name=f"c{i}.xhtml", lang="en")
        chapter.content = f"<html><body><h1>{title}</h1><p>{body}</p></body></html>"
        book.add_item(chapter)
        chapters.append(chapter)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *chapters]
    epub.write_epub(str(tmp_path / "b.epub"), book)

    doc = parse(tmp_path / "b.epub")
    assert doc.title == "Field Manual"
    assert [(u.heading_path, u.text.splitlines()[-1]) for u in doc.units] == [
        (["Tents"], "Pitch tents on flat ground."), (["Fires"], "Never leave fires.")]


# --- generic refusals -----------------------------------------------------------------------
def test_zero_byte_and_unsupported_files(tmp_path):
    (tmp_path / "empty.pdf").write_bytes(b"")
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff" + os.urandom(100))
    with pytest.raises(ParseError, match="empty"):
        parse(tmp_path / "empty.pdf")
    with pytest.raises(ParseError, match="'.jpg' are not supported"):
        parse(tmp_path / "photo.jpg")


def test_docx_that_is_a_zip_of_something_else(tmp_path):
    with zipfile.ZipFile(tmp_path / "fake.docx", "w") as archive:
        archive.writestr("hello.txt", "not a word document")
    with pytest.raises(ParseError, match="DOCX"):
        parse(tmp_path / "fake.docx")


def test_pdf_table_rows_stay_rows(tmp_path):
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 100), "Income statement (millions)", fontsize=11)
    for y, row in [(130, ("Net sales", "32,765", "31,657")), (145, ("Cost of sales", "16,682", "16,055"))]:
        for x, cell in zip((72, 320, 420), row):
            page.insert_text((x, y), cell, fontsize=10)
    doc.save(str(tmp_path / "t.pdf"))
    lines = parse(tmp_path / "t.pdf").units[0].text.splitlines()
    assert "Net sales\t32,765\t31,657" in lines
    assert "Cost of sales\t16,682\t16,055" in lines


# --- legacy Word (.doc) ------------------------------------------------------------------------
def _word97(text_8bit: str, text_utf16: str) -> bytes:
    """A minimal Word 97 file: an OLE compound file ([MS-CFB] v3) holding a WordDocument
    stream (FIB + text) and a 1Table stream (the piece table), as [MS-DOC] lays them out.
    No library writes .doc, so the fixture is assembled by hand."""
    import struct

    end, free, fat_sector, no_stream = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
    word = bytearray(4096)
    struct.pack_into("<HH", word, 0, 0xA5EC, 0x00C1)  # wIdent, nFib (Word 97)
    struct.pack_into("<H", word, 0x0A, 0x0200)  # fWhichTblStm: the table stream is "1Table"
    struct.pack_into("<H", word, 32, 14)  # csw
    struct.pack_into("<H", word, 62, 22)  # cslw
    struct.pack_into("<i", word, 64 + 12, len(text_8bit) + len(text_utf16))  # ccpText
    struct.pack_into("<H", word, 152, 93)  # cbRgFcLcb
    clx_size = 1 + 4 + 3 * 4 + 2 * 8
    struct.pack_into("<II", word, 154 + 33 * 8, 0, clx_size)  # fcClx, lcbClx
    word[0x800 : 0x800 + len(text_8bit)] = text_8bit.encode("cp1252")
    word[0x900 : 0x900 + 2 * len(text_utf16)] = text_utf16.encode("utf-16-le")
    table = bytearray(4096)
    cps = [0, len(text_8bit), len(text_8bit) + len(text_utf16)]
    pieces = struct.pack("<HIH", 0, (0x800 * 2) | 0x40000000, 0) + struct.pack("<HIH", 0, 0x900, 0)
    table[:clx_size] = struct.pack("<BI", 2, 3 * 4 + 2 * 8) + struct.pack("<3I", *cps) + pieces

    def entry(name: str, kind: int, left: int, right: int, child: int, start: int, size: int) -> bytes:
        encoded = (name + "\0").encode("utf-16-le") if name else b""
        return (encoded.ljust(64, b"\0") + struct.pack("<HBBIII", len(encoded), kind, 1, left, right, child)
                + bytes(36) + struct.pack("<IQ", start, size))

    directory = (entry("Root Entry", 5, no_stream, no_stream, 1, end, 0)
                 + entry("WordDocument", 2, 2, no_stream, no_stream, 2, len(word))
                 + entry("1Table", 2, no_stream, no_stream, no_stream, 10, len(table))
                 + entry("", 0, no_stream, no_stream, no_stream, 0, 0))
    fat = [fat_sector, end] + list(range(3, 10)) + [end] + list(range(11, 18)) + [end]
    fat += [free] * (128 - len(fat))
    header = bytearray(512)
    header[:8] = bytes.fromhex("D0CF11E0A1B11AE1")
    struct.pack_into("<HHHHH", header, 24, 0x3E, 3, 0xFFFE, 9, 6)
    struct.pack_into("<IIIIIIIII", header, 40, 0, 1, 1, 0, 4096, end, 0, end, 0)
    struct.pack_into("<109I", header, 76, 0, *([free] * 108))
    return bytes(header) + struct.pack("<128I", *fat) + directory + bytes(word) + bytes(table)


def test_legacy_doc_text_from_the_piece_table(tmp_path):
    field = '\x13 HYPERLINK "http://intranet/x" \x14the intranet\x15'
    (tmp_path / "old.doc").write_bytes(_word97(f"Quarterly report\rSee {field} for details.\r",
                                               "Über café in 東京\r"))
    doc = parse(tmp_path / "old.doc")
    assert doc.format == "doc"
    assert doc.units[0].text == "Quarterly report\nSee the intranet for details.\nÜber café in 東京"
