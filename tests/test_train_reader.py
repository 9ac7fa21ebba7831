"""The reader's training script: how it holds questions out."""

from __future__ import annotations

from types import SimpleNamespace

from eval.train_reader import MODES, question_groups


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
