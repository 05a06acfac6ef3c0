"""Grouped cross-validation of retrieval settings, on hand-made ranks worked out by hand."""

from __future__ import annotations

import pytest

from rag.eval.crossval import cross_validate, grouped_folds, mrr, rank_metrics


def test_rank_metrics():
    ranks = [1, 3, None, 7]
    assert mrr(ranks) == pytest.approx((1 + 1 / 3 + 1 / 7) / 4)
    assert rank_metrics(ranks) == pytest.approx({"page_hit@1": 0.25, "page_hit@5": 0.5, "page_hit@10": 0.75,
                                                 "mrr@10": (1 + 1 / 3 + 1 / 7) / 4})


def test_folds_keep_a_document_together():
    assert grouped_folds(["b", "a", "b", "c"], 2) == [1, 0, 1, 0]  # a -> 0, b -> 1, c -> 0


def test_held_out_scores_use_the_setting_chosen_without_the_fold():
    groups = ["A", "A", "B", "B", "C", "C"]
    ranks = {
        "configured": [1, 1, None, None, None, None],  # only finds document A's pages
        "other": [None, None, 1, 1, 1, 1],  # finds B's and C's
    }
    result = cross_validate(ranks, groups, prefer="configured", k=3)
    # Holding out A, "other" wins on B+C and then misses A; holding out B or C, the two tie
    # on the rest (MRR 0.5 each) and the configured setting is kept, which misses B and C.
    assert [c["setting"] for c in result["fold_choices"]] == ["other", "configured", "configured"]
    assert result["held_out"]["page_hit@1"] == 0.0
    assert result["configured"]["page_hit@1"] == pytest.approx(1 / 3)
    assert result["best_on_all"] == "other"  # looks best on everything, yet held out it does worst


def test_fewer_documents_than_folds_leaves_one_document_out():
    result = cross_validate({"c": [1, None, 2], "d": [2, 1, 1]}, ["x", "y", "x"], prefer="c", k=5)
    assert result["folds"] == 2
    assert [c["questions"] for c in result["fold_choices"]] == [2, 1]


@pytest.mark.parametrize("ranks, groups, prefer, match", [
    ({"c": [1, 1]}, ["x", "x"], "c", "at least two different documents"),
    ({"c": [1, 1]}, ["x", "y"], "missing", "not among the candidates"),
])
def test_bad_inputs_are_clear_errors(ranks, groups, prefer, match):
    with pytest.raises(ValueError, match=match):
        cross_validate(ranks, groups, prefer=prefer)
