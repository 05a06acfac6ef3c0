"""Grouped k-fold cross-validation of retrieval settings on a user's own questions.

A question set written for one's own documents has no train/test split, and a setting
picked by looking at every question flatters itself. Cross-validation gives an honest
figure: the questions are cut into ``k`` folds, each fold is scored with the setting that
did best on the *other* folds, and the held-out scores are pooled. Folds are grouped by
document, so questions about one filing are never on both sides of a split (they share
vocabulary and pages, which would leak).

Inputs are the rank of the first expected page per question (None: not in the top 10) for
every candidate setting, so nothing here touches the store; `rag.eval.qa` measures them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

Rank = int | None
HIT_KS = (1, 5, 10)
DEFAULT_FOLDS = 5


def mrr(ranks: Sequence[Rank]) -> float:
    """Mean reciprocal rank of the first expected page (0 when it is not in the top 10)."""
    return sum(1 / r for r in ranks if r) / len(ranks) if ranks else 0.0


def hit_rate(ranks: Sequence[Rank], k: int) -> float:
    return sum(1 for r in ranks if r and r <= k) / len(ranks) if ranks else 0.0


def rank_metrics(ranks: Sequence[Rank]) -> dict[str, float]:
    return {**{f"page_hit@{k}": hit_rate(ranks, k) for k in HIT_KS}, "mrr@10": mrr(ranks)}


def grouped_folds(groups: Sequence[Hashable], k: int) -> list[int]:
    """The fold of each question: its group's position in name order, modulo k.

    With fewer groups than ``k``, every group is its own fold (leave one group out)."""
    names = sorted(set(groups), key=str)
    fold_of = {g: i % k for i, g in enumerate(names)}
    return [fold_of[g] for g in groups]


def best_setting(ranks_by_setting: Mapping[str, Sequence[Rank]], questions: Sequence[int], prefer: str) -> str:
    """The setting with the best MRR@10 over ``questions``; ties go to ``prefer`` (the
    configured setting), then to the earlier setting in the grid."""
    order = list(ranks_by_setting)

    def score(name: str) -> tuple:
        return (mrr([ranks_by_setting[name][i] for i in questions]), name == prefer, -order.index(name))

    return max(order, key=score)


def cross_validate(
    ranks_by_setting: Mapping[str, Sequence[Rank]],
    groups: Sequence[Hashable],
    prefer: str,
    k: int = DEFAULT_FOLDS,
) -> dict:
    """Held-out metrics of "pick the best setting on the other folds", per fold's choice.

    ``ranks_by_setting`` maps a setting's name to the first-hit rank of every question (in
    the order of ``groups``); ``prefer`` names the configured setting, which must be one of them.
    """
    if prefer not in ranks_by_setting:
        raise ValueError(f"the configured setting {prefer!r} is not among the candidates")
    n = len(groups)
    if n < 2 or len(set(groups)) < 2:
        raise ValueError("cross-validation needs questions about at least two different documents")
    k = min(k, len(set(groups)))
    folds = grouped_folds(groups, k)
    held_out: list[Rank] = [None] * n
    choices = []
    for fold in range(k):
        train = [i for i in range(n) if folds[i] != fold]
        test = [i for i in range(n) if folds[i] == fold]
        chosen = best_setting(ranks_by_setting, train, prefer)
        choices.append({"fold": fold, "questions": len(test), "setting": chosen})
        for i in test:
            held_out[i] = ranks_by_setting[chosen][i]
    return {
        "folds": k,
        "fold_choices": choices,
        "held_out": rank_metrics(held_out),
        "configured": rank_metrics(ranks_by_setting[prefer]),
        # Chosen on every question: what to configure if held-out beats configured.
        "best_on_all": best_setting(ranks_by_setting, list(range(n)), prefer),
    }
