"""Chunking with the packaged model's real tokenizer: limits, offsets, pages, headings, boundaries."""

from __future__ import annotations

import itertools

import pytest

from ingest.chunking import CONTEXT_TOKENS, chunk_document, chunker_for
from ingest.parsers.base import ParsedDocument, TextUnit


def _sentences(prefix: str, n: int) -> str:
    return " ".join(f"{prefix} sentence number {i} talks about budgets, travel and leave policies." for i in range(n))


@pytest.fixture
def document():
    long_page = "\n\n".join(_sentences(f"Para{p}", 6) for p in range(12))
    return ParsedDocument(
        units=[
            TextUnit("Short first page.", page=1, heading_path=["Intro"]),
            TextUnit(long_page, page=2, heading_path=["Policies", "Travel"]),
            TextUnit("-".join(["antidisestablishmentarianism"] * 400), page=3),  # no whitespace anywhere
            TextUnit(_sentences("Last", 40), page=4, heading_path=["Appendix"]),
        ],
        format="pdf",
        pages=4,
    )


def test_chunks_fit_the_window_and_quote_their_unit_verbatim(settings, document):
    chunker = chunker_for(settings)
    chunks = chunk_document(document, settings)
    assert chunker.max_tokens == min(settings.chunk_tokens, 256 - 2 - CONTEXT_TOKENS)
    counted = chunker.count_tokens([c.text for c in chunks])
    with_context = chunker.count_tokens([c.embedding_text for c in chunks])
    assert max(with_context) <= 256 - 2  # the context never pushes a chunk past the window
    for chunk, tokens in zip(chunks, counted):
        unit = document.units[chunk.unit_index]
        assert unit.text[chunk.start : chunk.end] == chunk.text
        assert tokens == chunk.tokens <= chunker.max_tokens
        assert chunk.page == unit.page  # never spans two pages
        assert chunk.heading_path == unit.heading_path


def test_every_character_is_covered_and_neighbours_overlap(settings, document):
    chunks = [c for c in chunk_document(document, settings) if c.unit_index == 1]
    assert len(chunks) > 3
    assert chunks[0].start == 0 and chunks[-1].end == len(document.units[1].text)
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end  # overlap: no gap, some shared context
        assert after.start > before.start  # progress


def test_chunks_end_on_paragraph_or_sentence_boundaries(settings, document):
    text = document.units[1].text
    chunks = [c for c in chunk_document(document, settings) if c.unit_index == 1]
    for chunk in chunks[:-1]:
        assert chunk.text.endswith(".") or text[chunk.end : chunk.end + 2] == "\n\n"


def test_no_overlap_setting_gives_disjoint_chunks(settings, document):
    settings = settings.model_copy(update={"chunk_overlap": 0, "chunk_tokens": 64})
    chunks = [c for c in chunk_document(document, settings) if c.unit_index == 3]
    assert all(b.start >= a.end for a, b in itertools.pairwise(chunks))
    assert max(c.tokens for c in chunks) <= 64


def test_a_setting_above_the_model_window_is_capped(settings, document):
    settings = settings.model_copy(update={"chunk_tokens": 1000})
    chunks = chunk_document(document, settings)
    assert max(c.tokens for c in chunks) <= 254
    assert len({c.unit_index for c in chunks}) == 4


def test_short_unit_is_one_chunk(settings, document):
    first = [c for c in chunk_document(document, settings) if c.unit_index == 0]
    assert [(c.text, c.page, c.heading_path, c.start, c.end) for c in first] == [
        ("Short first page.", 1, ["Intro"], 0, 17)]


def test_embedded_text_carries_the_heading_or_the_page_opening(settings):
    statement = "Consolidated Statement of Cash Flows\nYears ended December 31\n\n" + "\n".join(
        f"Line item {i}: purchases of equipment {i * 17} and proceeds {i * 3}" for i in range(120))
    document = ParsedDocument(units=[TextUnit(statement, page=7, heading_path=[]),
                                     TextUnit(_sentences("Leave", 30), page=8, heading_path=["HR", "Leave"])],
                              format="pdf", pages=2)
    chunks = chunk_document(document, settings)
    page7 = [c for c in chunks if c.page == 7]
    page8 = [c for c in chunks if c.page == 8]
    assert len(page7) > 1 and len(page8) > 1
    assert page7[0].embedding_text == page7[0].text  # it begins the page: nothing to add
    for later in page7[1:]:
        assert later.embedding_text.startswith("Consolidated Statement of Cash Flows Years ended")
        assert later.embedding_text.endswith(later.text) and "Consolidated" not in later.text
    assert all(c.embedding_text == f"HR > Leave\n{c.text}" for c in page8)


def test_a_context_line_of_figures_is_cut_to_fit_and_counted(settings):
    # A statement page opening with a wall of numbers: 100 characters are ~60 word pieces,
    # more than the room a full chunk leaves for its context line.
    figures = " ".join(f"{n},{n % 997:03d}" for n in range(1000, 1020))
    page = figures + "\n\n" + _sentences("Cash", 80)
    chunker = chunker_for(settings)
    assert chunker.count_tokens([figures[:100]])[0] > CONTEXT_TOKENS
    chunks = chunk_document(ParsedDocument(units=[TextUnit(page, page=7)], format="pdf", pages=1), settings)
    later = chunks[1:]
    assert later and all(c.context and figures.startswith(c.context) for c in later)
    for chunk, counted in zip(chunks, chunker.count_tokens([c.embedding_text for c in chunks])):
        assert chunk.embedding_tokens == counted <= 256 - 2  # exact count, and never truncated
        assert chunk.context_tokens <= CONTEXT_TOKENS
