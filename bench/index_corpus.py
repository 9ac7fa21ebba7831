"""Time `index build` on a corpus: median, min and max over several fresh builds.

    python bench/index_corpus.py --corpus ../shared/datasets/bbc-news --runs 5 [--limit N]

Each run builds into a new temporary directory (so nothing is skipped as unchanged)
with the models already loaded, as `article-qa index build` does after start-up, and
reports documents/s and chunks/s end to end and per stage (parse, sentences, chunk,
embed, store). `--limit N` indexes the first N files (sorted paths) for a quicker
figure. Progress goes to stderr; stdout is a Markdown table. Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fmt, machine, summary


def _subset(corpus: Path, limit: int, into: Path) -> Path:
    """A directory of links to the first `limit` files of `corpus`, same relative paths."""
    files = sorted(p for p in corpus.rglob("*") if p.suffix in (".txt", ".jsonl"))[:limit]
    for f in files:
        target = into / f.relative_to(corpus)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(f.resolve())
    return into


def run(corpus: Path, runs: int, limit: int | None = None) -> dict:
    from indexing.pipeline import Indexer, build

    indexer = Indexer()  # models load once, outside the timed builds
    rows = []
    with tempfile.TemporaryDirectory() as sub:
        source = _subset(corpus, limit, Path(sub)) if limit else corpus
        for i in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                report = build(source, Path(tmp), indexer, warn=lambda _m: None)
                wall = time.perf_counter() - started
            rows.append((wall, report))
            print(f"run {i + 1}: {report.summary()}; " + ", ".join(
                f"{k} {v:.1f} s" for k, v in report.stage_seconds.items()),
                file=sys.stderr, flush=True)
    docs, chunks = rows[0][1].documents, rows[0][1].chunks
    stages = {name: summary([r.stage_seconds.get(name, 0.0) for _, r in rows], 2)
              for name in rows[0][1].stage_seconds}
    return {"corpus": str(corpus), "limit": limit, "documents": docs, "chunks": chunks,
            "runs": runs, "wall_s": summary([w for w, _ in rows], 1),
            "documents_per_s": summary([r.documents / w for w, r in rows], 2),
            "chunks_per_s": summary([r.chunks / w for w, r in rows], 2),
            "stage_s": stages}


def markdown(r: dict) -> str:
    scope = f"first {r['limit']} files of " if r["limit"] else ""
    lines = [f"{scope}`{Path(r['corpus']).name}`: {r['documents']:,} documents, "
             f"{r['chunks']:,} chunks; {r['runs']} fresh builds, median (min-max).", "",
             "| stage | seconds | documents/s | chunks/s | share |", "|---|---:|---:|---:|---:|"]
    total = r["wall_s"]["median"] or 1.0
    for name, s in r["stage_s"].items():
        sec = s["median"]
        rates = (f"{r['documents'] / sec:,.1f} | {r['chunks'] / sec:,.1f}" if sec >= 0.01
                 else "- | -")  # too quick to time
        lines.append(f"| {name} | {fmt(s)} | {rates} | {100 * s['median'] / total:.0f}% |")
    lines.append(f"| **end to end** | {fmt(r['wall_s'])} | {fmt(r['documents_per_s'])} | "
                 f"{fmt(r['chunks_per_s'])} | 100% |")
    lines += ["", "Annotation (spaCy) and embedding overlap in time (`indexing/pipeline.py`), "
              "so the stage shares add up to more than 100%."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.corpus.exists():
        sys.exit(f"corpus {args.corpus} not found")
    result = {"machine": machine(), "index": run(args.corpus, args.runs, args.limit)}
    print(markdown(result["index"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
