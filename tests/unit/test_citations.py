"""Citation markers, the overlap fallback, refusals, the run-on guard and condensing."""

from __future__ import annotations

import pytest

from rag.answer import AnswerGuard, clean_condensed, fallback_citations, finish, is_refusal, parse_citations
from rag.schema import RetrievedChunk


def source(n: int, text: str) -> RetrievedChunk:
    return RetrievedChunk(id=f"id{n}", score=1.0, doc_id=f"d{n}", source=f"/docs/file{n}.pdf", page=n,
                          text=text, snippet=text[:40])


SOURCES = [source(1, "Revenue grew to 4.2 million euros in 2023."),
           source(2, "The CEO is Marta Lindqvist."),
           source(3, "The board meets in Oslo every quarter.")]


@pytest.mark.parametrize("raw, text, cited", [
    ("Revenue was 4.2 million [1].", "Revenue was 4.2 million [1].", [1]),
    ("Marta leads it [1, 2].", "Marta leads it [1, 2].", [1, 2]),
    ("Marta leads it [2][3].", "Marta leads it [2][3].", [2, 3]),
    ("See [Source 2] and [sources 1 and 3].", "See [2] and [1, 3].", [1, 2, 3]),
    ("All of them [1-3].", "All of them [1, 2, 3].", [1, 2, 3]),
    ("It is in Oslo [9].", "It is in Oslo.", []),
    ("It is in Oslo [3, 7] and more [0].", "It is in Oslo [3] and more.", [3]),
    ("Nothing cited here.", "Nothing cited here.", []),
    ("[2][2] twice [2]", "[2][2] twice [2]", [2]),
])
def test_markers_are_read_and_unknown_numbers_removed(raw, text, cited):
    cleaned, citations = parse_citations(raw, SOURCES)
    assert cleaned == text
    assert [c.n for c in citations] == cited
    for c in citations:
        assert c.source == SOURCES[c.n - 1].source and c.page == c.n and not c.inferred


def test_a_huge_range_is_not_expanded():
    cleaned, citations = parse_citations("x [1-100000]", SOURCES)
    assert [c.n for c in citations] == [1]


def test_uncited_answers_fall_back_to_the_source_with_most_shared_words():
    text, citations = finish("The chief executive is Marta Lindqvist.", SOURCES)
    assert [(c.n, c.inferred) for c in citations] == [(2, True)]
    assert text == "The chief executive is Marta Lindqvist."


def test_no_fallback_when_nothing_overlaps_or_the_model_refused():
    assert fallback_citations("Bananas are yellow.", SOURCES) == []
    assert finish("I could not find the answer in the documents.", SOURCES)[1] == []


@pytest.mark.parametrize("text, refused", [
    ("I could not find the answer in the documents.", True),
    ("The sources do not contain this information.", True),
    ("This is not mentioned in the sources.", True),
    ("Revenue was 4.2 million euros [1].", False),
    ("The office opens at 8:30.", False),
])
def test_refusals_are_recognised(text, refused):
    assert is_refusal(text) is refused


def feed_all(text: str, step: int = 3) -> tuple[str, AnswerGuard]:
    guard, shown = AnswerGuard(), ""
    for i in range(0, len(text), step):
        shown += guard.feed(text[i:i + step])
        if guard.stopped:
            break
    return shown + guard.flush(), guard


def test_the_guard_stops_at_an_echoed_source_tag_without_showing_it():
    shown, guard = feed_all('The capital is Lima [1].\n<source n="2" file="x.pdf">\nmore text')
    assert guard.stopped and guard.text == "The capital is Lima [1]."
    assert "<" not in shown


def test_the_guard_stops_a_repeated_sentence_or_line():
    _, guard = feed_all("It opens at 8:30 [1]. It opens at 8:30 [1]. It opens at 8:30 [1]. It")
    assert guard.stopped and guard.text == "It opens at 8:30 [1]."
    _, guard = feed_all("Shelf one holds boxes\nShelf two holds bags\nShelf one holds boxes\nShelf")
    assert guard.text == "Shelf one holds boxes\nShelf two holds bags"


def test_the_guard_passes_normal_answers_through_whole():
    text = "Revenue grew to 4.2 million euros [1]. Yes. Yes. The CEO is Marta [2]."
    shown, guard = feed_all(text, step=1)
    assert shown == text and guard.text == text and not guard.stopped


@pytest.mark.parametrize("raw, expected", [
    ("Where does the Northwind board meet?", "Where does the Northwind board meet?"),
    ('Rewritten question: "Where does the Northwind board meet?"\nExtra', "Where does the Northwind board meet?"),
    ("", "Where does it meet?"),
    ("?", "Where does it meet?"),
])
def test_condensed_questions_are_cleaned_or_replaced_by_the_original(raw, expected):
    assert clean_condensed(raw, "Where does it meet?", 4000) == expected
