"""Names a question mentions, and whether retrieved passages mention them (rag.names)."""

from __future__ import annotations

import pytest

from rag.names import mentions, normalise, question_names, unmentioned_names
from rag.schema import RetrievedChunk


@pytest.mark.parametrize("question, names", [
    (("What is the FY2018 capital expenditure amount (in USD millions) for 3M? Give a response "
      "to the question by relying on the details shown in the cash flow statement."), ["3M"]),
    ("What are the geographies that American Express primarily operates in as of 2022?", ["American Express"]),
    ("Is Johnson & Johnson a capital-intensive business?", ["Johnson Johnson"]),
    ("How did JnJ's US sales growth compare in FY2022 and Q4?", ["JnJ"]),
    ("Does Foot Locker's new CEO have CEO experience at a company like Footlocker?", ["Foot Locker", "Footlocker"]),
    ("AMCOR: what changed in M&A and D&A in H1 2023?", ["AMCOR"]),  # an acronym may open a sentence
    ("Adobe revenue in 2022?", []),  # a capital at the start of a sentence proves nothing
    ("When does the office in Lyon open? Lyon is in France.", ["Lyon", "France"]),
    ("how many days of vacation do employees get", []),
    ("Which of our 2nd-tier contracts exceed 5m or 100k units?", []),  # amounts and ordinals
    ("Revenue of 3M in the 10-K for Q4FY23?", ["3M"]),
    ("本社はどこですか？", []),
])
def test_question_names(question, names):
    assert question_names(question) == names


def test_names_match_whole_words_case_insensitively():
    text = normalise("Purchases by 3M Company (the Company) in 2018; AMERICANEXPRESS_2022_10K.pdf")
    assert mentions("3M", text) and mentions("3m", text)
    assert mentions("American Express", text)  # words run together in a file name
    assert not mentions("M", text) and not mentions("Company Purchases", text)
    # A run may carry labels after the name: its leading words (or its acronym) still count.
    assert mentions("American Express Balance Sheet", text)
    assert mentions("3M Segment", text)
    assert not mentions("Express", normalise("American Airlines"))
    assert mentions("Northwind Traders Ltd", normalise("Northwind Traders' board")) and mentions("Adobe Inc", text + " adobe ")
    assert not mentions("Adjusted EBITDA", normalise("adjusted operating income"))


def passage(text: str, source: str = "docs/report.pdf", title: str | None = None) -> RetrievedChunk:
    return RetrievedChunk(id="1", score=1.0, doc_id=source, source=source, text=text, snippet=text[:40], title=title)


def test_unmentioned_names_look_at_text_title_and_file_name():
    question = "What was Adobe's revenue in FY2022?"
    assert unmentioned_names(question, [passage("Revenue was $17.6 billion.")]) == ["Adobe"]
    assert unmentioned_names(question, [passage("Revenue was $17.6 billion.", "pdfs/ADOBE_2022_10K.pdf")]) == []
    assert unmentioned_names(question, [passage("Revenue grew.", title="Adobe Inc. 10-K")]) == []
    assert unmentioned_names(question, [passage("Other."), passage("Adobe's revenue grew.")]) == []
    # Any one of several names is enough; a question without names is never held back.
    assert unmentioned_names("Compare Lyon and Paris offices", [passage("The Paris office opens at 9.")]) == []
    assert unmentioned_names("how long is the probation period?", [passage("Unrelated.")]) == []


def test_names_only_a_rewrite_brought_in_are_not_checked():
    rewrite = "Where does the board of Globex Corporation meet?"  # the model's guess, wrong
    passages = [passage("The board of Northwind Traders meets in Oslo.")]
    said = "Who leads Northwind Traders? Where does its board meet?"
    assert unmentioned_names(rewrite, passages) == ["Globex Corporation"]
    assert unmentioned_names(rewrite, passages, said) == []
    assert unmentioned_names("Does Northwind Traders meet in Globex Tower?", [passage("Nothing.")], said) == [
        "Northwind Traders"]
