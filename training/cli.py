"""`article-qa reader ...`: make training data, train the neural reader, export it.

`eval/cli.py` imports this module so that the console script has the group; the
online path (`service`) never imports it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from service.cli import _fail, friendly_errors, main
from training.recipe import DEFAULT_RECIPE, FOLDS, Recipe


@main.group("reader")
def reader_group() -> None:
    """Train the neural reader: `data` -> `train` (synthetic) -> `finetune` (real, exports)."""


@reader_group.command("data")
@click.option("--corpus", type=click.Path(path_type=Path), default=None,
              help="Articles to make questions from (.txt / .jsonl tree or file).")
@click.option("--index", "index_dir", type=click.Path(path_type=Path), default=None,
              help="Use an index's stored sentence parses instead of parsing a corpus.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="JSONL file to write the examples to.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Use only the first N articles.")
@click.option("--per-sentence", type=click.IntRange(1, 10), default=2, show_default=True,
              help="Questions asked about each sentence at most.")
@click.option("--sample", type=click.IntRange(min=0), default=12, show_default=True,
              help="Examples printed for review.")
@friendly_errors
def data_cmd(corpus, index_dir, out, seed, limit, per_sentence, sample) -> None:
    """Generate synthetic question/answer/passage triples from unlabeled articles."""
    from training.corpus import from_corpus, from_index
    from training.synthetic import Generator, summary

    if (corpus is None) == (index_dir is None):
        _fail("give exactly one of --corpus PATH or --index DIR")
    if corpus is not None and not corpus.exists():
        _fail(f"corpus {corpus} does not exist")
    articles = list(from_corpus(corpus, limit=limit) if corpus is not None
                    else from_index(index_dir, limit=limit))
    if not articles:
        _fail("no readable articles found; nothing to make questions from")
    examples = Generator(articles, seed=seed).examples(per_sentence=per_sentence)
    if not examples:
        _fail("no question could be made from these articles")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for ex in examples:
            f.write(ex.to_json() + "\n")
    tmp.replace(out)
    click.echo(f"{len(articles)} articles -> {out}")
    click.echo(summary(examples, sample=sample, seed=seed))
    sys.stdout.flush()


@reader_group.command("train")
@click.option("--data", "data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              multiple=True, required=True, help="Example JSONL files (`reader data`).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run directory: checkpoint, final weights, train.json.")
@click.option("--init", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Start from an earlier run's model.pt (a second stage).")
@click.option("--epochs", type=click.FloatRange(min=0.01), default=1.0, show_default=True)
@click.option("--max-examples", type=click.IntRange(min=1), default=None,
              help="Train on the first N examples only.")
@click.option("--batch-size", type=click.IntRange(1, 512), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(min=1e-7, max=1.0), default=1e-4, show_default=True)
@click.option("--max-len", type=click.IntRange(64, 512), default=128, show_default=True,
              help="Wordpieces per window (question + passage).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the run's last checkpoint.")
@click.option("--max-minutes", type=click.FloatRange(min=0.1), default=None,
              help="Stop at the first checkpoint after this long (resume later).")
@click.option("--threads", type=click.IntRange(1, 256), default=2, show_default=True)
@click.option("--device", default="auto", show_default=True,
              help="auto (a GPU when there is one), cpu or cuda.")
@friendly_errors
def train_cmd(data, out, init, epochs, max_examples, batch_size, lr, max_len, seed, resume,
              max_minutes, threads, device) -> None:
    """Fine-tune the span model on example files; resumable."""
    from training.train import TrainConfig, read_examples, train

    examples, digest = read_examples(list(data))
    if not examples:
        _fail("the --data files hold no examples")
    config = TrainConfig(data=tuple(p.name for p in data), data_sha1=digest, seed=seed,
                         max_len=max_len, batch_size=batch_size, lr=lr, epochs=epochs,
                         max_examples=max_examples, init=str(init) if init else None)
    summary = train(config, examples, out, resume=resume, max_minutes=max_minutes,
                    threads=threads, device=device,
                    log=lambda line: click.echo(line) or sys.stdout.flush())
    state = "finished" if summary["finished"] else "stopped (rerun with --resume)"
    click.echo(f"{state}: step {summary['steps']}/{summary['total_steps']}, "
               f"{summary['train_seconds']:.0f} s -> {out}")


def _dev_questions(dataset: Path):
    from eval.gold import load_gold

    if "test" in dataset.name:
        _fail(f"{dataset} looks like a test split; the reader is trained and calibrated on "
              "dev splits only")
    return load_gold(dataset)


def _retrieval(index_dir: Path, corpus: Path | None, reader=None):
    """A pipeline over `index_dir` (indexing `corpus` first when it is empty)."""
    from service.qa import QAPipeline
    from service.settings import Settings
    from training.gold import RetrievalOnly

    settings = Settings(index=index_dir, corpus=corpus or Path("data/articles"))
    return QAPipeline.load(settings, build_if_empty=corpus is not None,
                           reader=reader or RetrievalOnly())


def _max_len() -> int:
    from training.train import TrainConfig

    return TrainConfig.__dataclass_fields__["max_len"].default


@reader_group.command("export")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="A run's model.pt.")
@click.option("--run", "runs", type=click.Path(exists=True, file_okay=False, path_type=Path),
              multiple=True, help="Run directories to record in the manifest, in order.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("service/reader_model"), show_default=True)
@friendly_errors
def export_cmd(weights, runs, out) -> None:
    """Export weights to ONNX (fp32 and int8) with the tokenizer and a manifest."""
    from training.export import export

    manifest = export(weights, out, list(runs), _max_len())
    for name, info in manifest["files"].items():
        click.echo(f"{out / name}: {info['bytes'] / 1e6:.1f} MB")


@reader_group.command("finetune")
@click.option("--init", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="The synthetic stage's model.pt (`reader train`).")
@click.option("--set", "sets", type=(str, click.Path(exists=True, dir_okay=False, path_type=Path),
                                     click.Path(path_type=Path), click.Path(path_type=Path)),
              multiple=True, required=True,
              help="NAME DATASET INDEX CORPUS: a dev gold set, its index (built from CORPUS "
                   "when empty) and corpus; repeat per set.")
@click.option("--offsets", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              multiple=True, help="answer_offsets.jsonl: count answers only where labelled.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for the fold runs and the final run (resumable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("service/reader_model"), show_default=True)
@click.option("--folds", type=click.IntRange(2, 10), default=FOLDS, show_default=True)
@click.option("--epochs", type=click.FloatRange(min=0.01), default=DEFAULT_RECIPE.epochs,
              show_default=True)
@click.option("--lr", type=click.FloatRange(min=1e-7, max=1.0), default=DEFAULT_RECIPE.lr,
              show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=DEFAULT_RECIPE.threads,
              show_default=True)
@click.option("--device", default=DEFAULT_RECIPE.device, show_default=True,
              help="auto (a GPU when there is one), cpu or cuda.")
@friendly_errors
def finetune_cmd(init, sets, offsets, work, out, folds, epochs, lr, threads, device) -> None:
    """Fine-tune on dev questions and fit the confidence out of fold, then export."""
    from training.crossfit import DevSet, finetune
    from training.gold import read_offsets

    dev_sets = []
    for name, dataset, index_dir, corpus in sets:
        if not corpus.exists():
            _fail(f"corpus {corpus} does not exist")
        dev_sets.append(DevSet(name, _dev_questions(dataset), _retrieval(index_dir, corpus)))
    located: dict = {}
    for path in offsets:
        located.update(read_offsets(path))
    stage1 = init.parent if (init.parent / "train.json").exists() else None
    manifest = finetune(init, dev_sets, located, work, out, stage1=stage1, folds=folds,
                        recipe=Recipe(epochs=epochs, lr=lr, device=device, threads=threads),
                        log=lambda line: click.echo(line) or sys.stdout.flush())
    click.echo(f"{out}: threshold {manifest['threshold']}; out-of-fold dev {manifest['dev']}; "
               f"fp32 {manifest['dev_fp32']}")
