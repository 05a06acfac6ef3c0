"""Regenerate the PDF and DOCX files of the sample corpus (they are committed; run this after editing the text).

    .venv/bin/python samples/make_samples.py

The other sample documents are plain text files, edited directly. Everything here is
fictional and written for this project.
"""

from __future__ import annotations

from pathlib import Path

import pymupdf
from docx import Document

HERE = Path(__file__).resolve().parent / "documents"
NOTE = "Fictional company. Sample document shipped with onprem-rag."

# The travel policy: two pages, so answers cite a page number.
TRAVEL_PAGES = [
    (
        "Travel and expenses policy",
        [
            (
                "Scope",
                (
                    "This policy applies to every business trip of Kestrel Ridge Software employees. "
                    "Book trips through the travel desk (travel@kestrelridge.example) at least 10 days ahead."
                ),
            ),
            (
                "Getting there",
                (
                    "Trains are preferred for trips under 5 hours. Flights are economy class; "
                    "business class is allowed only for flights longer than 8 hours. Taxis are reimbursed "
                    "between 22:00 and 06:00 or when carrying equipment."
                ),
            ),
            (
                "Hotels",
                (
                    "The hotel limit is 165 EUR per night, breakfast included. In London, Paris and "
                    "Zurich the limit is 230 EUR per night."
                ),
            ),
        ],
    ),
    (
        "Travel and expenses policy (continued)",
        [
            (
                "Meals",
                (
                    "The daily meal allowance (per diem) is 48 EUR for a full day away and 24 EUR "
                    "for a day trip of more than 8 hours. Alcohol is never reimbursed."
                ),
            ),
            (
                "Approval",
                (
                    "Trips costing more than 2,500 EUR in total need the written approval of the "
                    "Chief Financial Officer before booking."
                ),
            ),
            (
                "Claiming expenses",
                (
                    "Submit receipts in the expense portal Ledgerline within 30 days of "
                    "your return. Claims are paid with the next monthly salary."
                ),
            ),
        ],
    ),
]

PARENTAL_LEAVE = [
    ("Parental leave", None),
    (None, NOTE),
    ("Who is eligible", "Every employee who has completed probation, whatever the length of their contract."),
    (
        "How long",
        (
            "The primary caregiver receives 20 weeks of fully paid parental leave. The second "
            "parent receives 6 weeks of fully paid leave, to be taken within the child's first year. "
            "Adoptive parents have the same rights."
        ),
    ),
    (
        "How to apply",
        (
            "Tell HR at least 8 weeks before the leave starts, using the form "
            "'Parental leave request' in the HR portal Harbour. HR confirms within 5 working days."
        ),
    ),
    (
        "Coming back",
        (
            "You return to the same role. In the first 8 weeks after your return you may work "
            "80 % of your hours for full pay."
        ),
    ),
]


def make_pdf(path: Path) -> None:
    # Base-14 fonts (Helvetica) are not embedded, which keeps the file a few KB.
    doc = pymupdf.open()
    for title, sections in TRAVEL_PAGES:
        page = doc.new_page(width=595, height=842)  # A4 in points
        y = 72
        for text, font, size in [(title, "hebo", 18), (NOTE, "heit", 9)] + [
            item for heading, body in sections for item in ((heading, "hebo", 13), (body, "helv", 11))
        ]:
            box = pymupdf.Rect(56, y, 539, 800)
            left = page.insert_textbox(box, text, fontname=font, fontsize=size)
            y = 800 - left + size * 0.8  # insert_textbox returns the unused height of the box
        doc.set_metadata({"title": "Travel and expenses policy", "author": "Kestrel Ridge Finance"})
    doc.save(path, garbage=4, deflate=True)


def make_docx(path: Path) -> None:
    doc = Document()
    for heading, body in PARENTAL_LEAVE:
        if heading:
            doc.add_heading(heading, level=1 if body is None else 2)
        if body:
            doc.add_paragraph(body)
    doc.core_properties.title = "Parental leave policy"
    doc.save(path)


def main() -> None:
    make_pdf(HERE / "finance" / "travel-expenses.pdf")
    make_docx(HERE / "hr" / "parental-leave-policy.docx")
    print(f"wrote {HERE}/finance/travel-expenses.pdf and {HERE}/hr/parental-leave-policy.docx")


if __name__ == "__main__":
    main()
