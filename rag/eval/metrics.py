"""Evaluation metrics, written out so their exact definitions are visible.

Ranking metrics follow trec_eval / BEIR (pytrec_eval): linear gain ``rel / log2(rank + 1)``,
only judgments with rel > 0 count as relevant. Answer metrics need no LLM judge: numbers
are normalised and compared within 1 %, other answers by token F1.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence

# --- Ranking -------------------------------------------------------------------------------


def ndcg_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """Normalised discounted cumulative gain of the first k ids."""
    gains = sorted((r for r in qrels.values() if r > 0), reverse=True)[:k]
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    if ideal == 0:
        return 0.0
    dcg = sum(qrels.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]) if qrels.get(doc, 0) > 0)
    return dcg / ideal


def recall_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    relevant = {d for d, r in qrels.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(ranked[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    for i, doc in enumerate(ranked[:k]):
        if qrels.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


RANKING_METRICS = {
    "ndcg@10": lambda r, q: ndcg_at_k(r, q, 10),
    "recall@10": lambda r, q: recall_at_k(r, q, 10),
    "recall@100": lambda r, q: recall_at_k(r, q, 100),
    "mrr@10": lambda r, q: mrr_at_k(r, q, 10),
}


def ranking_scores(ranked: Sequence[str], qrels: Mapping[str, int]) -> dict[str, float]:
    return {name: fn(ranked, qrels) for name, fn in RANKING_METRICS.items()}


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(seconds, 50) * 1000,
        "p95_ms": percentile(seconds, 95) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "mean_ms": mean(seconds) * 1000,
    }


def aggregate_to_documents(chunk_ranking: Sequence[tuple[str, float]], limit: int) -> list[str]:
    """Chunk hits (doc id, score), best first -> document ids ranked by their best chunk."""
    seen: dict[str, None] = {}
    for doc, _score in chunk_ranking:
        seen.setdefault(doc, None)
        if len(seen) == limit:
            break
    return list(seen)


# --- Answers -------------------------------------------------------------------------------

_SCALES = {
    "thousand": 1e3, "thousands": 1e3, "k": 1e3,
    "million": 1e6, "millions": 1e6, "mn": 1e6, "m": 1e6, "mm": 1e6,
    "billion": 1e9, "billions": 1e9, "bn": 1e9, "b": 1e9,
    "trillion": 1e12, "trillions": 1e12, "tn": 1e12,
}
_NUMBER = re.compile(
    r"(?P<neg>-|\()?\s*(?P<cur>\$)?\s*(?P<num>\d[\d,]*(?:\.\d+)?|\.\d+)\s*"
    r"(?P<pct>%|percent\b)?\s*(?P<scale>(?:thousands?|millions?|billions?|trillions?|mn|bn|tn|mm|[kmb])(?![a-z]))?",
    re.IGNORECASE,
)


_CITATION = re.compile(r"\[\d+\]")
# Dates say when, not how much: 2022-02-28, 2022/02/28, 02/28/2022, 28.02.2022.
_DATE = re.compile(r"\b(?:\d{4}[-/]\d{1,2}[-/]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})\b")
# "(1) Current Health and (2) Two Peaks": enumerators in running text, not figures.
_ENUMERATOR = re.compile(
    r"\(\d{1,2}\)(?=\s+(?!(?:thousands?|millions?|billions?|trillions?|percent|mn|bn|tn|mm|[kmb])\b)[^\W\d_])",
    re.IGNORECASE,
)


def _is_list_marker(text: str, m: re.Match) -> bool:
    """ "1." or "2)" opening a line numbers a list item: it is not a figure."""
    start, end = m.start("num"), m.end("num")
    line_start = text.rfind("\n", 0, start) + 1
    return not text[line_start:start].strip() and text[end : end + 1] in (".", ")") and text[end + 1 : end + 2] in (
        "", " ", "\n")


def numbers_in(text: str, *, skip_years: bool = True) -> list[set[float]]:
    """Every number in ``text`` as the set of values it may stand for.

    "$1,577 million" may be compared with "1577", "1.577" (billions) or "1577000000";
    "12.5%" with "0.125".
    Bare four-digit years (1900-2100) and dates are skipped: they say when, not how much.
    So are digits that are part of a name or a label ("3M", "Q2", "FY2022", "777X"), list
    numbers ("1." opening a line, "(2) Two Peaks"), and citation markers ("[1]"), which would
    otherwise match any 1 or 100 %.
    """
    text = _ENUMERATOR.sub(" ", _DATE.sub(" ", _CITATION.sub(" ", text)))
    found = []
    for m in _NUMBER.finditer(text):
        before, after = text[m.start("num") - 1 : m.start("num")], text[m.end("num") : m.end("num") + 1]
        if before.isalpha() or (after.isalpha() and not m.group("cur")) or _is_list_marker(text, m):
            continue
        raw = m.group("num").replace(",", "")
        try:
            value = float(raw)
        except ValueError:
            continue
        plain = not (m.group("cur") or m.group("pct") or m.group("scale") or "." in raw)
        if skip_years and plain and 1900 <= value <= 2100 and len(raw) == 4:
            continue
        if m.group("neg") and m.group("neg") == "-":
            value = -value
        values = {value, abs(value)}
        scale = (m.group("scale") or "").lower()
        if scale in _SCALES:
            # "1.577 billion" also reads as 1577 (millions), the unit a gold answer may be in.
            values |= {v * _SCALES[scale] / unit for v in list(values) for unit in (1, 1e3, 1e6, 1e9)}
        if m.group("pct"):
            values |= {v / 100 for v in list(values)}
        found.append(values)
    return found


def close(a: float, b: float, rel: float = 0.01) -> bool:
    if a == b:
        return True
    return abs(a - b) <= rel * max(abs(a), abs(b))


def _states(numbers: list[set[float]], wanted: set[float]) -> bool:
    return any(close(x, y) for values in numbers for x in values for y in wanted)


def numeric_match(answer: str, gold: str, question: str = "") -> float | None:
    """Share of the gold answer's numbers that the answer states (within 1 %); None if gold has none.

    Numbers the question already holds ("from August 30, 2023 onward") are no evidence: an
    answer that repeats the question states them too.
    """
    asked = numbers_in(question)
    gold_numbers = [g for g in numbers_in(gold) if not _states(asked, g)]
    if not gold_numbers:
        return None
    answer_numbers = numbers_in(answer)
    return sum(1 for g in gold_numbers if _states(answer_numbers, g)) / len(gold_numbers)


def tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


# Words that carry no answer: with a question given, F1 looks past them too.
FUNCTION_WORDS = frozenset("a an the of and or to in on at by for from with as is are was were be it its that this".split())


def token_f1(answer: str, gold: str, question: str = "") -> float:
    """Token F1 on what the question does not already say (unless the gold answer is all echo)."""
    asked = set(tokens(question)) | FUNCTION_WORDS if question else set()
    ref = Counter(t for t in tokens(gold) if t not in asked) or Counter(tokens(gold))
    pred = Counter(t for t in tokens(answer) if t not in asked or t in ref)
    common = sum((pred & ref).values())
    if common == 0:
        return 0.0
    precision = common / sum(pred.values())
    recall = common / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


# Correct = at least half of the gold numbers stated, or (no gold numbers) token F1 >= 0.5.
NUMERIC_CORRECT = 0.5
F1_CORRECT = 0.5


def answer_correctness(answer: str, gold: str, question: str = "") -> dict:
    """{"method": "numeric"|"f1", "score": 0..1, "correct": bool}.

    Both ways score only what the gold answer adds to ``question``, so repeating the question
    back earns nothing.
    """
    share = numeric_match(answer, gold, question)
    if share is not None:
        return {"method": "numeric", "score": share, "correct": share >= NUMERIC_CORRECT}
    f1 = token_f1(answer, gold, question)
    return {"method": "f1", "score": f1, "correct": f1 >= F1_CORRECT}
