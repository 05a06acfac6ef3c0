"""Relative score fusion: each ranking scaled to 0..1, weighted sum, missing side = 0."""

import pytest

from rag.store.base import Hit
from rag.store.fusion import relative_score_fusion


def hits(*pairs):
    return [Hit(point, score, {"text": point}) for point, score in pairs]


def test_scores_are_scaled_per_ranking_and_averaged():
    dense = hits(("a", 0.9), ("b", 0.5), ("c", 0.1))
    sparse = hits(("c", 30.0), ("b", 20.0), ("a", 10.0))
    fused = {h.id: h.score for h in relative_score_fusion(dense, sparse, None, 10)}
    assert fused == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.5})


def test_a_clear_winner_of_one_side_beats_a_middling_pair():
    # RRF would put "both" first (ranked 2nd by each side); relative scores keep the margin.
    dense = hits(("clear", 0.80), ("both", 0.42), ("x", 0.40))
    sparse = hits(("y", 12.0), ("both", 6.5), ("z", 6.0), ("w", 1.0))
    fused = relative_score_fusion(dense, sparse, [1.0, 1.0], 3)
    assert [h.id for h in fused][:2] == ["clear", "y"]  # equal: by id
    assert fused[0].score == pytest.approx(0.5) and fused[1].score == pytest.approx(0.5)
    both = next(h for h in relative_score_fusion(dense, sparse, None, 10) if h.id == "both")
    assert both.score == pytest.approx((0.02 / 0.40 + 5.5 / 11.0) / 2)


def test_weights_shift_the_balance():
    dense = hits(("d", 0.9), ("s", 0.1))
    sparse = hits(("s", 9.0), ("d", 1.0))
    assert [h.id for h in relative_score_fusion(dense, sparse, [3.0, 1.0], 2)] == ["d", "s"]
    assert [h.id for h in relative_score_fusion(dense, sparse, [1.0, 3.0], 2)] == ["s", "d"]
    assert [h.id for h in relative_score_fusion(dense, sparse, [1.0, 0.0], 2)] == ["d", "s"]


def test_one_side_empty_keeps_the_other_order():
    dense = hits(("a", 0.7), ("b", 0.6), ("c", 0.2))
    assert [h.id for h in relative_score_fusion(dense, [], None, 2)] == ["a", "b"]


def test_a_single_candidate_counts_as_the_best():
    fused = relative_score_fusion(hits(("only", 0.3)), [], [1.0, 1.0], 5)
    assert [(h.id, h.score) for h in fused] == [("only", 0.5)]


def test_ties_break_by_id_and_payload_is_kept():
    dense = hits(("b", 1.0), ("a", 0.0))
    sparse = hits(("a", 2.0), ("b", 0.0))
    fused = relative_score_fusion(dense, sparse, None, 2)
    assert [h.id for h in fused] == ["a", "b"]
    assert fused[0].payload == {"text": "a"}


def test_empty_rankings_give_nothing():
    assert relative_score_fusion([], [], None, 5) == []
