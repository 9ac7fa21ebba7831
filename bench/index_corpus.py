"""Time `index build` on a corpus: median, min and max over several fresh builds.

    python bench/index_corpus.py --corpus ../shared/datasets/bbc-news --runs 3

Each run builds into a new temporary directory (so nothing is skipped as unchanged)
and reports documents/s, chunks/s and the seconds spent per stage (parse, sentences,
chunk, embed, store). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from indexing.pipeline import Indexer, build

    indexer = Indexer()  # models load once, outside the timed builds
    rows = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            report = build(args.corpus, Path(tmp), indexer, warn=lambda _m: None)
            wall = time.perf_counter() - started
        rows.append((wall, report))
        print(f"run {i + 1}: {report.summary()}; "
              + ", ".join(f"{k} {v:.1f} s" for k, v in report.stage_seconds.items()), flush=True)

    def stat(values: list[float]) -> str:
        return f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"

    walls = [w for w, _ in rows]
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"wall seconds: {stat(walls)}")
    print(f"documents/s: {stat([r.documents / w for w, r in rows])}")
    print(f"chunks/s:    {stat([r.chunks / w for w, r in rows])}")


if __name__ == "__main__":
    main()
