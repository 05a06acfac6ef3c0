"""Token-aware chunking with the embedding model's own tokenizer.

Each `TextUnit` (one page, slide, sheet or heading section) is split on its own, so a
chunk never spans two pages and keeps its unit's heading path. A chunk holds at most
`chunk_tokens` tokens (never more than the model's window minus [CLS]/[SEP], so the
embedder never truncates), ends preferably at a paragraph, then a sentence, then a line,
then a word boundary, and the next chunk starts about `chunk_overlap` tokens earlier,
on a boundary too. `unit.text[start:end] == chunk.text`: the stored text is verbatim.

What is embedded (and BM25-indexed) is `embedding_text`: the chunk with a short context line
in front, its heading path, or for a later chunk of a page without headings the page's
opening words (a statement title such as "Consolidated Statement of Cash Flows" sits at the
top of the page, far from the table rows that a question is about).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ingest.parsers.base import ParsedDocument, TextUnit
from rag.embedding import load_tokenizer, model_path_for, model_window
from rag.settings import Settings

_SPECIAL_TOKENS = 2  # [CLS] and [SEP], added by the embedder
# Boundary strengths between two tokens (higher = better place to end a chunk).
_PARAGRAPH, _SENTENCE, _LINE, _WORD, _NONE = 4, 3, 2, 1, 0
_SENTENCE_END = frozenset(".!?;:")
CONTEXT_CHARS = 100  # at most this much context in front of a chunk...
CONTEXT_TOKENS = 48  # ...which the chunk size leaves room for in the model's window


@dataclass(frozen=True)
class Chunk:
    text: str
    page: int | None
    heading_path: list[str]
    start: int  # character offsets into the unit's text
    end: int
    tokens: int  # model tokens, without [CLS]/[SEP]
    unit_index: int
    context: str = ""  # heading path or the page's opening words; embedded, not stored as text
    context_tokens: int = 0

    @property
    def embedding_text(self) -> str:
        return f"{self.context}\n{self.text}" if self.context else self.text

    @property
    def embedding_tokens(self) -> int:
        """Model tokens of `embedding_text` (word pieces never span the newline between the two)."""
        return self.tokens + self.context_tokens


def chunk_context(unit: TextUnit, start: int) -> str:
    """The context line of a chunk starting at ``start`` in ``unit``."""
    if unit.heading_path:
        context = " > ".join(unit.heading_path)
    elif start > 0:
        context = " ".join(unit.text[:CONTEXT_CHARS * 2].split())  # the page's opening words
    else:
        return ""  # the chunk begins the page: its own first words are the context
    return context[:CONTEXT_CHARS]


class Chunker:
    def __init__(self, model_path: Path, chunk_tokens: int, chunk_overlap: int):
        self.tokenizer = load_tokenizer(model_path)
        window = model_window(model_path)
        self.max_tokens = max(1, min(chunk_tokens, window - _SPECIAL_TOKENS - CONTEXT_TOKENS))
        self.overlap = max(0, min(chunk_overlap, self.max_tokens // 2))

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def chunk_units(self, units: list[TextUnit]) -> list[Chunk]:
        encodings = self.tokenizer.encode_batch([u.text for u in units], add_special_tokens=False)
        chunks: list[Chunk] = []
        for index, (unit, encoding) in enumerate(zip(units, encodings)):
            for start, end in self._spans(unit.text, encoding.offsets):
                chunks.append(Chunk(unit.text[start:end], unit.page, list(unit.heading_path), start, end, 0,
                                    index, chunk_context(unit, start)))
        return self._verified(chunks)

    def _spans(self, text: str, offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Character spans of the chunks of one unit."""
        n = len(offsets)
        if n == 0:
            return []
        if n <= self.max_tokens:
            return [(offsets[0][0], offsets[-1][1])]
        spans = []
        first = 0
        while first < n:
            last = min(first + self.max_tokens, n)  # exclusive token index
            if last < n:
                last = self._best_break(text, offsets, first + max(1, self.max_tokens // 2), last)
            spans.append((offsets[first][0], offsets[last - 1][1]))
            if last >= n:
                break
            first = self._overlap_start(text, offsets, first, last) if self.overlap else last
        return spans

    def _best_break(self, text: str, offsets, low: int, high: int) -> int:
        """The token index in [low, high] where a chunk ends best (latest among the strongest)."""
        best, best_score = high, -1
        for i in range(high, low - 1, -1):
            score = _boundary(text, offsets, i)
            if score > best_score:
                best, best_score = i, score
                if score == _PARAGRAPH:
                    break
        return best

    def _overlap_start(self, text: str, offsets, first: int, last: int) -> int:
        """Start of the next chunk: about `overlap` tokens back from `last`, on a boundary."""
        low = max(first + 1, last - self.overlap)
        best, best_score = last, -1
        for i in range(low, last):
            score = _boundary(text, offsets, i)
            if score > best_score:  # earliest among the strongest: keeps the most context
                best, best_score = i, score
        return best if best_score >= _WORD else last

    def _verified(self, chunks: list[Chunk]) -> list[Chunk]:
        """Count tokens of the final texts (a cut inside a word can tokenize differently)."""
        counts = self.count_tokens([c.text for c in chunks])
        contexts = self._fitted_contexts({c.context for c in chunks if c.context})
        out = []
        for chunk, count in zip(chunks, counts):
            while count > self.max_tokens:  # rare: trim characters until it fits
                cut = chunk.start + (len(chunk.text) * self.max_tokens) // count
                cut = max(chunk.start + 1, min(cut, chunk.end - 1))
                chunk = Chunk(chunk.text[: cut - chunk.start], chunk.page, chunk.heading_path,
                              chunk.start, cut, 0, chunk.unit_index, chunk.context)
                count = self.count_tokens([chunk.text])[0]
            context, context_tokens = contexts.get(chunk.context, ("", 0))
            out.append(Chunk(chunk.text, chunk.page, chunk.heading_path, chunk.start, chunk.end, count,
                             chunk.unit_index, context, context_tokens))
        return out

    def _fitted_contexts(self, contexts: set[str]) -> dict[str, tuple[str, int]]:
        """Each context line (as key) cut to CONTEXT_TOKENS tokens, with its token count.

        100 characters of figures can be more word pieces than the room the chunk size
        leaves; the embedder would then silently cut the end of the chunk instead.
        """
        ordered = sorted(contexts)
        fitted = {}
        for context, encoding in zip(ordered, self.tokenizer.encode_batch(ordered, add_special_tokens=False)):
            if len(encoding.ids) <= CONTEXT_TOKENS:
                fitted[context] = (context, len(encoding.ids))
            else:
                cut = context[: encoding.offsets[CONTEXT_TOKENS - 1][1]]
                fitted[context] = (cut, self.count_tokens([cut])[0])
        return fitted


def _boundary(text: str, offsets, i: int) -> int:
    """How good a place the gap before token i is to end a chunk."""
    prev_end, next_start = offsets[i - 1][1], offsets[i][0]
    gap = text[prev_end:next_start]
    if not gap:
        return _NONE
    if "\n\n" in gap:
        return _PARAGRAPH
    if text[prev_end - 1] in _SENTENCE_END:
        return _SENTENCE
    if "\n" in gap:
        return _LINE
    return _WORD


@lru_cache(maxsize=4)
def _chunker(model_path: str, chunk_tokens: int, chunk_overlap: int) -> Chunker:
    return Chunker(Path(model_path), chunk_tokens, chunk_overlap)


def chunker_for(settings: Settings) -> Chunker:
    return _chunker(str(model_path_for(settings)), settings.chunk_tokens, settings.chunk_overlap)


def chunk_document(document: ParsedDocument, settings: Settings) -> list[Chunk]:
    return chunker_for(settings).chunk_units(document.units)
