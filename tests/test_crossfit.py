"""The cross-fitted fine-tune: every dev question is read, once, by a model not trained on it."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import numpy as np

from eval.gold import GoldQuestion
from eval.squad import squad_split
from service.reader import CALIBRATION_FEATURES
from training import crossfit
from training.calibrate import Read
from training.crossfit import DevSet, fold_of
from training.synthetic import Example


def _questions(prefix: str, n: int) -> list[GoldQuestion]:
    return [GoldQuestion(f"{prefix}{k:04d}", f"question {k}?", ("an answer",) if k % 2 else (),
                         (), "noun_phrase" if k % 2 else "unanswerable") for k in range(n)]


def test_folds_are_balanced_and_cut_across_the_dev_test_split() -> None:
    ids = [f"q{k}" for k in range(3000)]
    for folds in (2, 3, 5):
        counts = Counter(fold_of(i, folds) for i in ids)
        assert set(counts) == set(range(folds))
        assert max(counts.values()) - min(counts.values()) < 0.2 * len(ids) / folds
    # The SQuAD dev half (one hash digit) is dealt into every fold, not into one.
    dev = [i for i in ids if squad_split(i) == "dev"]
    assert set(Counter(fold_of(i, 3) for i in dev)) == {0, 1, 2}
    assert fold_of("q17", 3) == fold_of("q17", 3)


def test_each_question_is_read_out_of_fold_and_the_model_trains_on_all(monkeypatch,
                                                                      tmp_path) -> None:
    pipeline = SimpleNamespace(nlp=None)
    sets = [DevSet("news", _questions("n", 30), pipeline),
            DevSet("squad", _questions("s", 60), pipeline)]
    trained: dict[str, set[str]] = {}
    read_by: dict[str, list[str]] = {}
    rng = np.random.default_rng(0)

    def examples(pipeline, questions, encoder, offsets):
        return [Example(f"gold-{q.id}", q.question, "passage", "", -1, "gold", q.type, "d")
                for q in questions]

    def fine_tune(exs, name, init, run, recipe, log):
        trained[run.name] = {ex.id.removeprefix("gold-") for ex in exs}
        return run / "model.pt"

    def export(weights, out, runs, max_len):
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").write_text(json.dumps({"weights": str(weights)}))

    def reads(model_dir, model_file, dev_sets, fold, folds, assist):
        out = []
        for s in dev_sets:
            for q in s.questions:
                if fold_of(q.id, folds) == fold:
                    read_by.setdefault(q.id, []).append(f"{model_dir.parent.name}/{model_file}")
                    f1s = rng.integers(0, 2, 3).astype(float) if q.answers else np.zeros(3)
                    out.append(Read(s.name, bool(q.answers),
                                    rng.normal(size=(3, len(CALIBRATION_FEATURES))), f1s))
        return out

    monkeypatch.setattr(crossfit, "gold_examples", examples)
    monkeypatch.setattr(crossfit, "_fine_tune", fine_tune)
    monkeypatch.setattr(crossfit, "export", export)
    monkeypatch.setattr(crossfit, "_reads", reads)
    monkeypatch.setattr("service.feature_reader.FeatureReader", lambda nlp: None)

    init = tmp_path / "stage1" / "model.pt"
    init.parent.mkdir()
    init.write_bytes(b"weights")
    manifest = crossfit.finetune(init, sets, {}, tmp_path / "work",
                                 tmp_path / "out", folds=3, log=lambda line: None)
    everyone = {q.id for s in sets for q in s.questions}
    assert trained["all"] == everyone
    for qid, readers in read_by.items():
        # Once as int8 and once as fp32, by the one fold model that never trained on it.
        assert len(readers) == 2 and len({r.split("/")[0] for r in readers}) == 1
        assert qid not in trained[readers[0].split("/")[0]]
    assert set(read_by) == everyone
    written = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert written["weights"].endswith("all/model.pt") and written["folds"] == 3
    assert len(written["calibration"]["weights"]) == len(CALIBRATION_FEATURES)
    assert written["dev"]["news"]["questions"] == 30 and written["dev"]["squad"]["questions"] == 60
    assert 0.0 < manifest["threshold"] < 1.0 and "squad" in manifest["dev_fp32"]
