"""The real-question stage, cross-fitted: fine-tune on the dev splits' questions and fit
the confidence on questions each model never saw.

The dev splits hold a few hundred real questions, needed twice: to fine-tune the model
and to fit its confidence and abstention cut (a model is overconfident on questions it
was trained on). Split once, a third of them fitted the calibration (122 questions) and
two thirds fine-tuned. Here every question serves both. The questions are dealt into
`folds` by a hash of their id; for each fold, a model fine-tuned on the other folds reads
that fold's questions as the service would, so the calibration is fitted on every dev
question, each read out of fold. The shipped model is then fine-tuned on all of them
with the same recipe, and takes that calibration (the usual cross-fitting assumption:
a model fine-tuned on a little more data is no less sure of itself).

Each fold's model is read both as int8 (what ships) and as fp32, so the manifest says
what quantisation costs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.gold import GoldQuestion
from service.encoding import WindowEncoder, load_tokenizer
from training.calibrate import Read, calibrate, collect, fit_with_cut, scores_at
from training.export import FP32, INT8, export, sha1
from training.gold import gold_examples
from training.model import encoder_path
from training.recipe import DEFAULT_RECIPE, FOLDS, Recipe
from training.synthetic import Example
from training.train import WEIGHTS, TrainConfig, train


@dataclass(frozen=True, slots=True)
class DevSet:
    """A dev gold set with the pipeline that retrieves over its index."""

    name: str
    questions: Sequence[GoldQuestion]
    pipeline: object


def fold_of(question_id: str, folds: int) -> int:
    """The fold a question belongs to. Read off sha1 past its first hex digit, which
    splits SQuAD into dev and test halves (`eval.squad.squad_split`)."""
    return int(hashlib.sha1(question_id.encode()).hexdigest()[1:9], 16) % folds


def _digest(examples: Sequence[Example]) -> str:
    digest = hashlib.sha1()
    for ex in examples:
        digest.update(ex.to_json().encode() + b"\n")
    return digest.hexdigest()


def _fine_tune(examples: Sequence[Example], name: str, init: Path, run: Path, recipe: Recipe,
               log: Callable[[str], None]) -> Path:
    config = TrainConfig(data=(name,), data_sha1=_digest(examples), seed=recipe.seed,
                         max_len=recipe.max_len, batch_size=recipe.batch_size, lr=recipe.lr,
                         epochs=recipe.epochs, init=str(init))
    summary = train(config, examples, run, resume=True, threads=recipe.threads,
                    device=recipe.device, log=log)
    if not summary["finished"]:
        raise RuntimeError(f"the fine-tune in {run} did not finish")
    return run / WEIGHTS


def _reads(model_dir: Path, model_file: str, sets: Sequence[DevSet], fold: int, folds: int,
           assist) -> list[Read]:
    from service.reader import Reader

    reader = Reader(sets[0].pipeline.nlp, model_dir=model_dir, model_file=model_file,
                    calibrated=False, assist=assist)
    out = []
    for s in sets:
        held = [q for q in s.questions if fold_of(q.id, folds) == fold]
        out.extend(collect(reader, s.pipeline, held, s.name))
    return out


def _save_reads(path: Path, reads: dict[str, list[Read]]) -> None:
    """The out-of-fold reads, for trying other calibrations without reading again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({name: [
        {"set": r.set_name, "answerable": r.answerable, "features": r.features.tolist(),
         "f1s": r.f1s.tolist()} for r in rows] for name, rows in reads.items()}))


def finetune(init: Path, sets: Sequence[DevSet], offsets: dict, work: Path, out: Path,
             stage1: Path | None = None, folds: int = FOLDS, recipe: Recipe = DEFAULT_RECIPE,
             log: Callable[[str], None] = print) -> dict:
    """Cross-fit the fine-tune and calibration, then write the shipped model into `out`
    (ONNX, tokenizer, manifest with calibration, cut and out-of-fold dev scores).
    Resumable: finished runs are not retrained."""
    from service.feature_reader import FeatureReader

    encoder = WindowEncoder(load_tokenizer(encoder_path() / "tokenizer.json"), recipe.max_len)
    by_question: dict[str, list[Example]] = {}
    for s in sets:
        for q in s.questions:
            by_question[q.id] = gold_examples(s.pipeline, [q], encoder, offsets)
    log(f"{len(by_question)} dev questions -> "
        f"{sum(map(len, by_question.values()))} windows, {folds} folds")
    assist = FeatureReader(sets[0].pipeline.nlp)
    # Runs are kept per starting point, so a new synthetic stage never resumes old folds.
    work = work / sha1(init)[:12]
    reads: dict[str, list[Read]] = {INT8: [], FP32: []}
    for fold in range(folds):
        examples = [ex for qid, exs in by_question.items() if fold_of(qid, folds) != fold
                    for ex in exs]
        run = work / f"fold-{fold}"
        weights = _fine_tune(examples, f"dev questions outside fold {fold}/{folds}", init, run,
                             recipe, log)
        export(weights, run / "model", [run], recipe.max_len)
        for model_file in reads:
            reads[model_file].extend(_reads(run / "model", model_file, sets, fold, folds, assist))
        log(f"fold {fold}: fine-tuned on {len(examples)} windows, read its held-out questions")
    _save_reads(work / "out-of-fold-reads.json", reads)
    everything = [ex for exs in by_question.values() for ex in exs]
    run = work / "all"
    weights = _fine_tune(everything, "dev questions", init, run, recipe, log)
    export(weights, out, [r for r in (stage1, run) if r is not None], recipe.max_len)
    fp32_weights, fp32_bias, fp32_cut = fit_with_cut(reads[FP32])
    manifest = calibrate(out, reads[INT8], extra={
        "folds": folds,
        "dev_fp32": scores_at(reads[FP32], fp32_weights, fp32_bias, fp32_cut),
        "threshold_fp32": fp32_cut})
    return manifest
