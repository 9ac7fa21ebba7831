"""The reader's training script: how it holds questions out."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from eval.train_reader import FOLDS, MODES, best_threshold, fold_of, question_groups


def _example(corpus: str, qid: str, mode: str):
    return SimpleNamespace(corpus=corpus, mode=mode, gold=SimpleNamespace(id=qid))


def test_a_question_is_one_group_across_retrieval_modes():
    # Every mode's evidence of a question shares its group, so a fold holds the question out
    # whole; the same id in another corpus is another question.
    examples = [_example(corpus, qid, mode) for corpus in ("news", "squad")
                for qid in ("q1", "q2") for mode in MODES]
    groups = question_groups(examples)
    by_question: dict[tuple[str, str], set[int]] = {}
    for e, g in zip(examples, groups):
        by_question.setdefault((e.corpus, e.gold.id), set()).add(int(g))
    assert all(len(g) == 1 for g in by_question.values())
    assert len({next(iter(g)) for g in by_question.values()}) == 4


def test_fold_of_keeps_a_question_whole_and_balances_folds():
    groups = np.repeat(np.arange(20), 3)  # 20 questions, 3 modes each
    for seed in (0, 1):
        fold = fold_of(groups, seed)
        assert all(len(set(fold[groups == g])) == 1 for g in range(20))
        assert sorted(np.bincount(fold, minlength=FOLDS)) == [12] * FOLDS
    assert not np.array_equal(fold_of(groups, 0), fold_of(groups, 1))


def test_threshold_is_the_lowest_best_cut_on_the_mean_curve():
    # Two runs over one answerable and one unanswerable question of one corpus: answering
    # the first (right) and abstaining on the second is best, whatever the run.
    right = SimpleNamespace(corpus="c", gold=SimpleNamespace(answers=("a b",), answerable=True))
    unanswerable = SimpleNamespace(corpus="c", gold=SimpleNamespace(answers=(), answerable=False))
    runs = [([right, unanswerable], np.array([0.6, 0.3]), ["a b", "x"]),
            ([right, unanswerable], np.array([0.5, 0.4]), ["a b", "x"])]
    t = best_threshold(runs)
    assert 0.4 < t <= 0.5
    assert all(c[0] >= t > c[1] for _, c, _ in runs)
