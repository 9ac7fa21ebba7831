"""In-process question answering latency: `QAPipeline.ask` as `/ask` calls it.

    python bench/ask.py --index index --runs 5 [--reader feature|neural]

Both readers are timed in the same process, one after the other (compare them as a ratio
measured in one run); `--reader` times one.

Each run asks every benchmark question once (at least 200: the bundled gold questions
and their lower-cased, unpunctuated variants) with the answer and question caches off,
so every question is parsed and answered from scratch; the per-generation sentence
caches stay warm between runs, as in a running server. Reports p50/p95/p99 of the total and the median of each
stage (embed, retrieve, read), as median (min-max) over the runs, plus one figure for a
repeated question served from the answer cache.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fmt, machine, percentile, questions, summary
from service.settings import READERS


def _uncached_reader(nlp, kind: str):
    """A reader of `kind` that remembers no question (parses are redone every time)."""
    from service.feature_reader import FeatureReader
    from service.reader import Reader

    feature = FeatureReader(nlp, question_cache=0)
    return feature if kind == "feature" else Reader(nlp, question_cache=0, assist=feature)


def run(index: Path, runs: int, kind: str, indexer=None) -> dict:
    from service.qa import QAPipeline, indexer_for
    from service.settings import Settings

    qs = questions(200)
    settings = Settings(index=index, reader=kind)
    indexer = indexer or indexer_for(settings)
    # Nothing about a question is remembered between runs (answers, parses); what a
    # running server keeps per index generation (rebuilt sentences) stays warm.
    pipeline = QAPipeline(settings, indexer=indexer, answer_cache=0,
                          reader=_uncached_reader(indexer.nlp, kind))
    for q in qs[:10]:  # load lazily-initialised parts outside the timed runs
        pipeline.ask(q)
    per_run: dict[str, list[float]] = {k: [] for k in
                                       ("p50", "p95", "p99", "embed", "retrieve", "read")}
    for _ in range(runs):
        totals, stages = [], {"embed": [], "retrieve": [], "read": []}
        for q in qs:
            started = time.perf_counter()
            result = pipeline.ask(q)
            totals.append((time.perf_counter() - started) * 1000)
            for k in stages:
                stages[k].append(result.timings_ms[k])
        for name, q in (("p50", 50), ("p95", 95), ("p99", 99)):
            per_run[name].append(percentile(totals, q))
        for k, v in stages.items():
            per_run[k].append(statistics.median(v))
    profile = _profile(pipeline, qs)
    cached = QAPipeline(settings, indexer=indexer)
    cached.ask(qs[0])
    hits = []
    for _ in range(200):
        started = time.perf_counter()
        cached.ask(qs[0])
        hits.append((time.perf_counter() - started) * 1000)
    return {"reader": kind, "questions": len(qs), "runs": runs,
            **{k: summary(v, 2) for k, v in per_run.items()},
            "cached_p50": round(statistics.median(hits), 3), "profile": profile}


def _profile(pipeline, qs: list[str]) -> str | None:
    """One more pass under pyinstrument (when installed): where an answer's time goes."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return None
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for q in qs:
        pipeline.ask(q)
    profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    lines = [line for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "QAPipeline.ask" in line), 0)
    return "\n".join(lines[start:start + 40])


def markdown(r: dict) -> str:
    return "\n".join([
        f"The {r.get('reader', 'feature')} reader: {r['questions']} distinct questions per "
        f"run, answer cache off, {r['runs']} runs; median (min-max) over runs, milliseconds.",
        "",
        "| p50 | p95 | p99 | embed (median) | retrieve (median) | read (median) |",
        "|---:|---:|---:|---:|---:|---:|",
        "| " + " | ".join(fmt(r[k]) for k in ("p50", "p95", "p99", "embed", "retrieve", "read"))
        + " |",
        "",
        f"A repeated question answered from the answer cache: p50 {r['cached_p50']} ms.",
        *(["", "Profile of one pass (pyinstrument, seconds summed over all questions):", "",
           "```", r["profile"], "```"] if r.get("profile") else []),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("index"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--reader", choices=READERS, default=None,
                        help="time only this reader (default: both)")
    args = parser.parse_args()
    from service.qa import indexer_for
    from service.settings import Settings

    settings = Settings(index=args.index)
    indexer = indexer_for(settings)
    kinds = [args.reader] if args.reader else list(READERS)
    readers = {kind: run(args.index, args.runs, kind, indexer) for kind in kinds}
    # "ask" is the reader the service answers with (targets read it), when it was timed.
    result = {"machine": machine(), "ask": readers.get(settings.reader) or readers[kinds[0]],
              "readers": readers}
    print("\n\n".join(markdown(r) for r in readers.values()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
