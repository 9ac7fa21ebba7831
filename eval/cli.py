"""`article-qa eval ...`: run the evaluation, score prediction files, import SQuAD.

The console script points here: this module adds the `eval` group to
:data:`service.cli.main`, so `service` never imports `eval` (DESIGN.md).
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
import tempfile
from pathlib import Path

import click

from eval.gold import GoldFormatError
from eval.harness import HIGHER_IS_BETTER, EvalError
from eval.squad import SquadFormatError
from service.cli import _fail, friendly_errors, main, min_confidence_option
from service.settings import Settings

DATASETS = Path(__file__).resolve().parent / "datasets"
DEFAULT_DATASET = DATASETS / "bundled-test.jsonl"


def eval_errors(fn):
    """Bad eval input and unreachable servers end as one 'error: ...' line, exit 1."""
    @functools.wraps(fn)
    @friendly_errors
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (EvalError, GoldFormatError, SquadFormatError) as exc:
            _fail(str(exc))
    return wrapper


def make_indexer(settings: Settings):
    """Load the models (tests replace this with their session indexer)."""
    from indexing.chunking import ChunkParams
    from indexing.pipeline import Indexer

    return Indexer(model=settings.model,
                   chunk=ChunkParams(settings.chunk_tokens, settings.chunk_overlap))


def _load_questions(dataset: Path | None):
    from eval.gold import load_gold

    dataset = dataset or DEFAULT_DATASET
    if not dataset.is_file():
        raise EvalError(f"dataset {dataset} does not exist; give a gold JSONL file with "
                        "--dataset (see eval/gold.py for the format)")
    return load_gold(dataset)


@main.group("eval")
def eval_group() -> None:
    """Offline evaluation: score the QA system on a gold set."""


dataset_option = click.option(
    "--dataset", type=click.Path(path_type=Path, dir_okay=False), default=None,
    help="gold set (JSONL, see eval/gold.py) [default: eval/datasets/bundled-test.jsonl]")


@eval_group.command("run")
@dataset_option
@click.option("--index", "index_dir", type=click.Path(path_type=Path), default=None,
              help="evaluate in-process on this index [env ARTICLE_QA_INDEX; default ./index]")
@click.option("--url", default=None, help="evaluate a running server instead, e.g. "
              "http://127.0.0.1:8000 (only the system; no baselines)")
@click.option("--corpus", type=click.Path(path_type=Path, exists=True), default=None,
              help="index this corpus first when --index has no index; without --index, "
                   "into a temporary directory removed afterwards")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("eval/out"), show_default=True,
              help="directory for results.jsonl, report.json, report.md and charts")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="also run the other reader, lexical-only, dense-only and best-sentence for comparison")
@click.option("--fail-under", default=None, metavar="NAME=MIN,...",
              help="exit 1 when a metric of the system is below its minimum, e.g. "
                   "'f1=0.5,citation_validity=1.0'. Rates are fractions in [0, 1] "
                   f"(0.5, not 50). Names: {', '.join(HIGHER_IS_BETTER)}")
@min_confidence_option
@click.pass_context
@eval_errors
def run_cmd(ctx, dataset, index_dir, url, corpus, out_dir, baselines, fail_under,
            min_confidence) -> None:
    """Score the system (and baselines) on a gold set; print a table and write reports.

    All rates in the table and the reports are fractions in [0, 1]; latencies
    are milliseconds per question.
    """
    from eval.harness import check_thresholds, parse_thresholds, run_eval
    from eval.report import comparison_lines, format_table, write_report

    if url and (index_dir or corpus):
        raise EvalError("--url evaluates a running server; leave out --index and --corpus")
    if url and min_confidence is not None:
        raise EvalError("--min-confidence applies in-process; a server answers at its own "
                        "cut (start it with --min-confidence or ARTICLE_QA_MIN_CONFIDENCE)")
    # Validate everything cheap before loading models or calling the server.
    thresholds = parse_thresholds(fail_under) if fail_under is not None else {}
    dataset = dataset or DEFAULT_DATASET
    questions = _load_questions(dataset)
    temp_dir = None
    try:
        if url:
            from eval.harness import HttpSystem

            server = HttpSystem(url)
            server.check()
            if baselines and ctx.get_parameter_source("baselines").name != "DEFAULT":
                click.echo("note: --url evaluates only the served system; baselines need "
                           "--index", err=True)
            systems, where = {"system": server}, url
        else:
            if corpus is not None and index_dir is None:
                temp_dir = Path(tempfile.mkdtemp(prefix="article-qa-eval-"))
                index_dir = temp_dir
            settings = Settings().with_overrides(index=index_dir, min_confidence=min_confidence)
            systems = _pipelines(settings, corpus, baselines)
            # A temporary index is gone after the run: name what it was built from instead.
            where = (f"a temporary index of {corpus}" if temp_dir is not None
                     else str(settings.index))
        run = run_eval(questions, systems, progress=True)
        run.meta.update({"mode": "url" if url else "in-process"})
        if not url:
            run.meta["reader"] = settings.reader
        # The cut the span readers answered at (any system may stand in for a pipeline).
        reader = getattr(systems["system"], "reader", None)
        if hasattr(reader, "fitted_threshold"):
            run.meta["answer_threshold"] = {"value": reader.threshold,
                                            "fitted": reader.fitted_threshold}
        files = write_report(run, out_dir, dataset=dataset, index=where)
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
    click.echo(f"{run.questions} questions from {dataset}, on {where}\n")
    click.echo(format_table(run))
    lines = comparison_lines(files.report)
    if lines:
        click.echo("\n" + "\n".join(lines))
    click.echo(f"\nrates are fractions in [0, 1]; latencies in ms. "
               f"Wrote {files.results}, {files.json}, {files.markdown} and "
               f"{len(files.charts)} charts in {out_dir}")
    failures = check_thresholds(run.metrics["system"]["overall"], thresholds)
    if failures:
        click.echo("error: --fail-under not met: " + "; ".join(failures), err=True)
        sys.exit(1)


def _pipelines(settings: Settings, corpus: Path | None, baselines: bool) -> dict:
    from eval.baselines import build_systems, default_names
    from indexing.shards import index_exists

    index_dir = Path(settings.index)
    empty = not index_exists(index_dir)
    if empty and corpus is None:
        # Say so before spending seconds on loading models.
        raise EvalError(f"no index in {index_dir}; build one with `article-qa index build "
                        f"--index {index_dir}`, or pass --corpus to index one first")
    indexer = make_indexer(settings)
    if empty:
        from indexing.pipeline import build

        report = build(corpus, index_dir, indexer, progress=sys.stderr.isatty(),
                       warn=lambda m: click.echo(m, err=True))
        click.echo(f"indexed {corpus} -> {index_dir}: {report.summary()}", err=True)
    names = default_names(settings, baselines)
    return build_systems(settings, indexer=indexer, names=names)


@eval_group.command("score")
@click.argument("predictions", type=click.Path(path_type=Path, dir_okay=False))
@dataset_option
@eval_errors
def score_cmd(predictions, dataset) -> None:
    """Score a SQuAD-style PREDICTIONS.json ({question_id: answer, "" = no answer}).

    Prints the official SQuAD 2.0 scores as JSON, rates as fractions in [0, 1].
    Questions without a prediction count as abstentions.
    """
    from eval.metrics import squad_scores

    dataset = dataset or DEFAULT_DATASET
    questions = _load_questions(dataset)
    try:
        predicted = json.loads(Path(predictions).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalError(f"predictions file {predictions} does not exist") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise EvalError(f"{predictions} is not JSON: {exc}") from None
    if not isinstance(predicted, dict) or not all(
            isinstance(v, str) or v is None for v in predicted.values()):
        raise EvalError(f"{predictions} must be a JSON object mapping question ids to answer "
                        'strings ("" or null for no answer)')
    gold = {q.id: list(q.answers) for q in questions}
    unknown = [qid for qid in predicted if qid not in gold]
    if unknown:
        shown = ", ".join(map(repr, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
        raise EvalError(f"{len(unknown)} prediction id(s) are not in {dataset}: {shown}; "
                        "are the predictions for another gold set?")
    missing = [qid for qid in gold if qid not in predicted]
    if missing:
        click.echo(f"warning: {len(missing)} of {len(gold)} questions have no prediction; "
                   "scored as abstentions", err=True)
    scores = squad_scores({k: v or "" for k, v in predicted.items()}, gold)
    fractions = {k: (v if k.endswith("total") else v / 100.0) for k, v in scores.items()}
    click.echo(json.dumps(fractions, indent=2))


@eval_group.command("import-squad")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="directory for corpus.jsonl, gold.jsonl and its dev/test halves")
@click.option("--distractors", type=click.Path(path_type=Path, exists=True), default=None,
              help="Also write corpus-open.jsonl: the corpus plus articles from this "
                   "corpus, for an open-retrieval evaluation.")
@click.option("--distractor-count", type=click.IntRange(min=1), default=500, show_default=True)
@eval_errors
def import_squad_cmd(file, out_dir, distractors, distractor_count) -> None:
    """Turn a SQuAD v1.1/v2.0 JSON file into a corpus and a gold set."""
    from eval.squad import import_squad, write_open_corpus

    summary = import_squad(file, out_dir)
    if distractors is not None:
        added = write_open_corpus(summary.corpus_path, distractors, distractor_count,
                                  Path(out_dir) / "corpus-open.jsonl")
        click.echo(f"corpus-open.jsonl: {summary.documents} documents and {added} distractors")
    click.echo(f"{summary.documents} documents, {summary.questions} questions "
               f"({summary.unanswerable} unanswerable) -> {summary.corpus_path}, "
               f"{summary.gold_path} (halves: {', '.join(p.name for p in summary.split_paths)}); "
               f"{len(summary.mismatches)} offset mismatches repaired")


# The `reader` group (training the neural reader) joins the console script here too.
import training.cli  # noqa: E402,F401

if __name__ == "__main__":
    main()
