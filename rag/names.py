"""The names a question mentions, and whether the retrieved passages mention any of them.

A question about "3M's capital expenditure" asked where only Adobe's filing is visible
finds Adobe's cash-flow pages: one 10-K reads much like another, so the relevance gate
lets them through and a small model answers with Adobe's figures. Names tell them apart.
When a question names something (a company, a product, a place) and not one retrieved
passage mentions any of those names, in its text, title, heading or file name, the
answer is "not found" and the model is not called.

A name is a word written with a capital or a digit inside a sentence ("Adobe", "3M",
"AMEX", "PepsiCo", "Lyon"), or a run of such words ("American Express", "Johnson &
Johnson"). The first word of a sentence counts only when it is an acronym or holds a
digit, since any word starts a sentence with a capital. Calendar and reporting labels
(FY2022, Q3, USD, GAAP, CEO...) are not names: every filing has them.

Scripts without capitals (Chinese, Japanese, Arabic...) yield no names, so the gate never
refuses them. A nickname the documents never use ("JnJ" for Johnson & Johnson) is
refused with a message that says which names were looked for, so the asker can rephrase.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rag.schema import RetrievedChunk

# Labels that look like names but say nothing about which document is meant.
GENERIC_TERMS = frozenset(
    """
    i a an the what which who whom whose when where why how is are was were do does did has have had
    can could would should will may might if in on at for of to by with from as and or not no yes
    please give answer assume calculate using use based list explain describe compare summarize
    summarise tell show provide consider among according note also then this that these those it its
    us u.s usa uk eu usd eur gbp jpy chf cad aud cny inr fx gaap ifrs ebit ebitda eps roe roa roi
    capex opex cogs sg&a r&d p&l m&a d&a yoy qoq ttm ytd ceo cfo coo cto ceos ok id pdf faq hr it
    fy fiscal quarter year annual q h
    january february march april may june july august september october november december
    jan feb mar apr jun jul aug sep sept oct nov dec
    monday tuesday wednesday thursday friday saturday sunday
    """.split()
)
# Company suffixes that documents often leave out.
LEGAL_FORMS = frozenset("inc corp corporation co company ltd llc plc ag sa se nv gmbh group holdings".split())
# FY2022, FY22, Q3, H1, Q4FY23, 10-K, 10Q, 8-K: reporting periods and form names.
_LABEL = re.compile(r"^(?:(?:fy|q[1-4]|h[12])\d{0,4}(?:fy\d{2,4})?|\d{1,2}-?[kq]|\d+)$")
# Amounts, ordinals and units written in lower case: 5m, 100k, 2nd, 10am, 64gb ("3M" stays a name).
_AMOUNT = re.compile(r"^\d+(?:[.,]\d+)*[a-z]{1,3}$")
_WORD = re.compile(r"[^\W_](?:[\w&'’.\-]*[^\W_])?")
_SENTENCE_END = re.compile(r"[.!?:;]\s+|\n+")
_POSSESSIVE = re.compile(r"['’]s?$", re.IGNORECASE)


def _is_capitalised(word: str) -> bool:
    return any(ch.isupper() for ch in word) or (any(ch.isdigit() for ch in word) and any(ch.isalpha() for ch in word))


def _is_acronym_or_code(word: str) -> bool:
    letters = [ch for ch in word if ch.isalpha()]
    has_digit = any(ch.isdigit() for ch in word)
    return (has_digit and bool(letters)) or (len(letters) >= 2 and all(ch.isupper() for ch in letters))


def _is_generic(word: str) -> bool:
    low = word.lower().strip(".")
    return low in GENERIC_TERMS or bool(_LABEL.match(low)) or bool(_AMOUNT.match(word))


def _is_name_word(word: str) -> bool:
    """Capitalised and not a label, nor made only of labels and plain words ("2nd-tier")."""
    if not word or not _is_capitalised(word) or _is_generic(word):
        return False
    return any(_is_capitalised(part) and not _is_generic(part) for part in word.split("-") if part)


def question_names(question: str) -> list[str]:
    """The names in ``question``, in order, without repeats ("American Express", "3M")."""
    names: list[str] = []
    for sentence in _SENTENCE_END.split(question):
        run: list[str] = []  # the name being read: adjacent name words, "&" allowed between
        previous_end = 0
        for position, match in enumerate(_WORD.finditer(sentence)):
            word = _POSSESSIVE.sub("", match.group())
            is_name = _is_name_word(word) and (position > 0 or _is_acronym_or_code(word))
            joined = sentence[previous_end : match.start()].strip() in ("", "&")
            if is_name and run and joined:
                run.append(word)
            else:
                _add(names, run)
                run = [word] if is_name else []
            previous_end = match.end()
        _add(names, run)
    return names


def _add(names: list[str], run: list[str]) -> None:
    name = " ".join(run)
    if name and name not in names:
        names.append(name)


def normalise(text: str) -> str:
    """Lower case, every run of non-alphanumerics one space, padded: ' american express '."""
    return " " + " ".join(re.findall(r"[^\W_]+", text.lower())) + " "


def mentions(name: str, haystack: str) -> bool:
    """``name`` in ``haystack`` (normalised) as whole words, or a shorter form of it.

    A run of capitalised words may carry labels after the name ("American Express Balance
    Sheet", "AMCOR Adjusted"), so its leading two or more words, or its first word when
    that is an acronym, also count.
    """
    words = normalise(name).strip().split()
    while len(words) > 1 and words[-1] in LEGAL_FORMS:  # "Adobe Inc" is mentioned as "Adobe"
        words = words[:-1]
    forms = [words[:n] for n in range(len(words), 1, -1)]
    if words and (len(words) == 1 or _is_acronym_or_code(name.split()[0])):
        forms.append(words[:1])
    squashed = haystack.replace(" ", "")
    for form in forms:
        if f" {' '.join(form)} " in haystack:
            return True
        # File names often run words together: AMERICANEXPRESS_2022_10K.pdf.
        if len(form) > 1 and "".join(form) in squashed:
            return True
    return False


def passage_text(chunk: RetrievedChunk) -> str:
    return normalise(" ".join(filter(None, (chunk.text, chunk.title, chunk.heading, chunk.source))))


def unmentioned_names(question: str, chunks: Iterable[RetrievedChunk], said: str | None = None) -> list[str]:
    """The question's names when no passage mentions any of them; [] when one does (or none are named).

    ``said``: the asker's own words (question and conversation) when ``question`` is a model's
    rewrite of them; names only the rewrite brings in are not held against the passages.
    """
    names = question_names(question)
    if said is not None:
        words = normalise(said)
        names = [name for name in names if mentions(name, words)]
    if not names:
        return []
    texts = [passage_text(c) for c in chunks]
    if any(mentions(name, text) for name in names for text in texts):
        return []
    return names
