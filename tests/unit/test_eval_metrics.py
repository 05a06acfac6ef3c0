"""Evaluation metrics on tiny hand-made rankings, with values worked out by hand."""

from __future__ import annotations

import math

import pytest

from rag.eval.metrics import (
    aggregate_to_documents,
    answer_correctness,
    mrr_at_k,
    ndcg_at_k,
    numbers_in,
    numeric_match,
    percentile,
    recall_at_k,
    token_f1,
)

LOG3 = math.log2(3)


def test_ndcg_exact_values():
    qrels = {"a": 1, "b": 2}
    # ranked: x, a, b -> DCG = 1/log2(3) + 2/log2(4); ideal: b, a -> 2/1 + 1/log2(3)
    assert ndcg_at_k(["x", "a", "b"], qrels, 10) == pytest.approx((1 / LOG3 + 1) / (2 + 1 / LOG3), abs=1e-12)
    assert ndcg_at_k(["x", "a", "b"], qrels, 10) == pytest.approx(0.6199062332840657, abs=1e-12)
    assert ndcg_at_k(["b", "a"], qrels, 10) == 1.0
    assert ndcg_at_k(["x", "y"], qrels, 10) == 0.0
    # cut-off: only the first k count, and the ideal is cut too
    assert ndcg_at_k(["x", "b", "a"], qrels, 1) == 0.0
    assert ndcg_at_k(["b", "x", "a"], qrels, 1) == 1.0
    # zero-relevance judgments are not relevant
    assert ndcg_at_k(["z"], {"z": 0, "a": 1}, 10) == 0.0


def test_ndcg_binary_single_relevant_at_rank_two():
    assert ndcg_at_k(["x", "a"], {"a": 1}, 10) == pytest.approx(1 / LOG3, abs=1e-12)  # 0.6309...


def test_recall_and_mrr():
    qrels = {"a": 1, "b": 1, "c": 1, "z": 0}
    ranked = ["x", "b", "y", "a"]
    assert recall_at_k(ranked, qrels, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, qrels, 10) == pytest.approx(2 / 3)
    assert mrr_at_k(ranked, qrels, 10) == 0.5
    assert mrr_at_k(ranked, qrels, 1) == 0.0
    assert mrr_at_k(["z", "y"], qrels, 10) == 0.0


def test_chunks_fold_into_documents_by_their_best_chunk():
    hits = [("d2", 0.9), ("d1", 0.8), ("d2", 0.7), ("d3", 0.6), ("d1", 0.5)]
    assert aggregate_to_documents(hits, 10) == ["d2", "d1", "d3"]
    assert aggregate_to_documents(hits, 2) == ["d2", "d1"]


def test_percentile_interpolates():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 95) == 5
    assert percentile([], 50) == 0.0


@pytest.mark.parametrize("answer, gold, correct", [
    ("Capital expenditure was $1,577 million [1].", "$1577.00", True),
    ("It was 1.577 billion dollars.", "$1577.00", True),  # the gold figure is in millions
    ("It was 1.577 dollars.", "$1577.00", False),  # no unit given: no guessing
    ("Capex: USD 1,570 million.", "$1577.00", True),  # within 1 %
    ("Capex: USD 1,560 million.", "$1577.00", False),  # 1.1 % off
    ("The margin was 30.8%.", "30.8%", True),
    ("The margin was 0.308.", "30.8%", True),
    ("Operating margin fell from 36.8% to 34.6% in 2022.",
     "No, it declined from 36.8% in FY 2021 to 34.6% in FY2022. A drop by 2.2%.", True),
    ("In 2022 it grew.", "It grew by 5.4% in 2022.", False),  # years do not count as the figure
    ("JnJ expects a gain of about $20 billion.", "approximately $20 billion gain", True),
])
def test_numeric_answers(answer, gold, correct):
    result = answer_correctness(answer, gold)
    assert result["method"] == "numeric"
    assert result["correct"] is correct


def test_numeric_share_counts_each_gold_number():
    assert numeric_match("from 36.8% to 34.6%", "36.8% to 34.6%, down 2.2%") == pytest.approx(2 / 3)
    assert numeric_match("anything", "no numbers here") is None


def test_text_answers_use_token_f1():
    assert token_f1("Customer deposits", "Customer deposits") == 1.0
    assert token_f1("the deposits of customers", "Customer deposits") == pytest.approx(2 * 0.25 * 0.5 / 0.75)
    result = answer_correctness("United States, EMEA, APAC and LACC", "United States, EMEA, APAC, and LACC")
    assert result == {"method": "f1", "score": 1.0, "correct": True}
    assert answer_correctness("Bananas", "Customer deposits")["correct"] is False


def test_a_sample_is_spread_over_the_whole_question_set():
    from rag.eval.qa import spread

    items = list(range(73))
    sample = spread(items, 24)
    assert len(sample) == 24 == len(set(sample))
    assert sample[0] == 0 and sample[-1] >= 69  # reaches the last filings, not only the first
    assert max(b - a for a, b in zip(sample, sample[1:])) <= 4  # evenly spaced
    assert spread(items, None) == items and spread(items, 100) == items


def test_names_labels_and_citation_markers_are_not_figures():
    """Seen in a real run: "3M", "Q2" and "[1]" made wrong answers score as correct."""
    assert numbers_in("3M in Q2 of FY2022 reported 777X orders [1] [2]") == []
    gold = "The entertainment segment experienced the highest growth of 9% during Q2 FY2024."
    assert answer_correctness("The best category in Q2 was Best Buy Mobile [1].", gold)["correct"] is False
    assert answer_correctness("Operating margin for 3M fell.", "Operating margin for 3M fell by 1.7%.")["score"] == 0
    assert answer_correctness("Entertainment grew 9% [2].", gold)["correct"] is True
    assert any(1577.0 in v or 1.577 in v for v in numbers_in("$1.577B"))  # "$3M"-style amounts still count
    assert any(2018.0 in v for v in numbers_in("Adj. EBITDA was $2,018mn"))


def test_list_numbers_are_not_figures():
    gold = "Amcor completed these acquisitions: 100% equity interest of a flexibles company."
    answer = "The sources are:\n1. [1]\n2. [2]\n 3) the report"
    assert numbers_in(answer) == []
    assert answer_correctness(answer, gold)["correct"] is False
    assert any(1.5 in v for v in numbers_in("Growth was\n1.5% in 2022"))  # a figure at a line start still counts


def test_dates_and_enumerators_are_not_figures():
    """Seen in a real run: "(1)", "(2)" in the gold matched the "02" of a made-up date."""
    gold = ("Best Buy acquired all outstanding shares of two companies during FY 2022: (1) Current Health Ltd "
            "and (2) Two Peaks, LLC d/b/a Yardbird Furniture")
    answer = "1. Best Buy China: 2022: 2022-02-28: Best Buy China acquired a subsidiary in 2022."
    assert numbers_in(gold) == [] and numbers_in(answer) == []
    assert answer_correctness(answer, gold)["correct"] is False
    assert numbers_in("on 02/28/2022 and 28.02.2022") == []
    assert any(1.0 in v for v in numbers_in("a loss of (1) million"))  # a negative amount still counts
    assert any(3.0 in v for v in numbers_in("segments grew (3) percent"))


def test_repeating_the_question_back_is_not_a_correct_answer():
    question = "Which business segment of JnJ will be treated as a discontinued operation from August 30, 2023 onward?"
    gold = "The Consumer Health business segment will be treated as a discontinued operation from August 30, 2023 onward."
    echo = "The business segment of JnJ will be treated as a discontinued operation from August 30, 2023 onward."
    assert answer_correctness(echo, gold)["correct"] is True  # without the question: "30" matches
    result = answer_correctness(echo, gold, question)
    assert result == {"method": "f1", "score": 0.0, "correct": False}
    right = answer_correctness("Consumer Health will be a discontinued operation [1].", gold, question)
    assert right["method"] == "f1" and right["correct"] is True
    # Numbers the question does not hold still decide: the answer must state them.
    assert answer_correctness("It was $1,577 million.", "$1577.00", "What was FY2018 capex?")["correct"] is True
    assert answer_correctness("Capex in 2018 was 30.", "$1577.00", "What was FY2018 capex?")["correct"] is False


def test_page_hits_by_mode_include_the_better_of_dense_and_bm25_per_question():
    from rag.eval.qa import page_hits_by_mode

    rows = [
        {"hit_rank_by_mode": {"hybrid": 2, "dense": 1, "sparse": None}},
        {"hit_rank_by_mode": {"hybrid": None, "dense": 7, "sparse": 3}},
        {"hit_rank_by_mode": {"hybrid": None, "dense": None, "sparse": None}},
        {"expected": []},  # no expected source: not counted
    ]
    by_mode = page_hits_by_mode(rows)
    assert by_mode["hybrid"]["page_hit@5"] == 1 / 3
    assert by_mode["dense"]["page_hit@1"] == 1 / 3 and by_mode["sparse"]["page_hit@5"] == 1 / 3
    best = by_mode["best_of_dense_and_sparse"]
    assert best["page_hit@1"] == 1 / 3 and best["page_hit@5"] == 2 / 3  # rank 1 and rank 3
    assert best["mrr@10"] == (1 + 1 / 3) / 3
    assert page_hits_by_mode([{"expected": []}]) is None


def test_tuning_recommends_a_mode_alone_or_the_hybrid_settings_that_won(monkeypatch):
    from rag.eval.qa import settings_env
    from rag.eval.retrieval import HybridParams
    from rag.settings import Settings

    relative = HybridParams(60, 1.25, 1.0, 100, "relative")
    assert settings_env("dense", relative) == {"RAG_RETRIEVAL_MODE": "dense"}
    assert settings_env("hybrid", relative) == {"RAG_HYBRID_DENSE_WEIGHT": "1.25", "RAG_PREFETCH_K": "100"}
    rrf = settings_env("hybrid", HybridParams(10, 2.0, 1.0, 50, "rrf"))
    assert rrf["RAG_RRF_K"] == "10"
    for name, value in rrf.items():  # what it recommends is what the settings read
        monkeypatch.setenv(name, value)
    assert (Settings().rrf_k, Settings().hybrid_dense_weight, Settings().prefetch_k) == (10, 2.0, 50)
