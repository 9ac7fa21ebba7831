"""Indexing and serving on a local Ray cluster: one node against two (docs/SCALING.md).

    python bench/cluster.py --corpus ../shared/datasets/bbc-news --limit 300 --runs 2

* indexing: documents/s of `index build` (a fresh sharded index, 2 shards) done here
  without Ray, on a one-node Ray cluster (1 CPU) and on a two-node one (1 CPU each),
  runs interleaved; the actors' model loading is inside the timing;
* serving: `/ask` requests/s at 8 clients for `--seconds`, `serve --ray` with 1 and 2
  replicas on the two-node cluster (answer cache off).

Every node here is a raylet on this one 2-core machine, all on 127.0.0.1
(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), so two nodes are two cores, not two machines,
and the load generator shares them. Not part of the tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only, for this script

from bench.common import ROOT, free_port, machine, questions
from bench.http_load import load
from bench.index_corpus import _subset


def _cluster(nodes: int):
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(nodes - 1):
        c.add_node(num_cpus=1)
    c.wait_for_nodes()
    return c


def _stop(c) -> None:
    import ray

    ray.shutdown()
    c.shutdown()


def indexing(corpus: Path, runs: int) -> dict[str, list[float]]:
    from indexing.cluster import RayProcessor
    from indexing.pipeline import Indexer, build

    indexer = Indexer()
    rates: dict[str, list[float]] = {"here, no Ray": [], "Ray, 1 node": [], "Ray, 2 nodes": []}
    docs = sum(1 for p in corpus.rglob("*.txt"))
    for run in range(runs):
        for name in rates:
            nodes = {"Ray, 1 node": 1, "Ray, 2 nodes": 2}.get(name)
            c = _cluster(nodes) if nodes else None
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    processor = RayProcessor(c.address) if c else None
                    t = time.perf_counter()
                    report = build(corpus, Path(tmp) / "index", indexer, shards=2,
                                   processor=processor, warn=lambda _m: None)
                    rates[name].append(report.documents / (time.perf_counter() - t))
            finally:
                if c:
                    _stop(c)
            print(f"run {run + 1} {name}: {rates[name][-1]:.2f} documents/s of {docs}",
                  file=sys.stderr, flush=True)
    return rates


def serving(index: Path, seconds: float, runs: int) -> dict[str, list[float]]:
    import urllib.request

    qs = questions()
    out: dict[str, list[float]] = {"1 replica": [], "2 replicas": []}
    c = _cluster(2)
    try:
        for run in range(runs):
            for name, replicas in (("1 replica", 1), ("2 replicas", 2)):
                port = free_port()
                env = {**os.environ, "HF_HUB_OFFLINE": "1", "ARTICLE_QA_ANSWER_CACHE": "0",
                       "ARTICLE_QA_RATE_LIMIT": "0"}
                proc = subprocess.Popen(
                    [sys.executable, "-m", "service.cli", "serve", "--index", str(index),
                     "--ray", c.address, "--replicas", str(replicas), "--port", str(port)],
                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True)
                try:
                    deadline = time.monotonic() + 180
                    while True:
                        try:
                            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health",
                                                        timeout=2):
                                break
                        except OSError:
                            if time.monotonic() > deadline:
                                raise
                            time.sleep(0.5)
                    load(port, "/ask", 8, 2.0, qs)  # warm every replica
                    r = load(port, "/ask", 8, seconds, qs)
                    out[name].append(r["rps"])
                    print(f"run {run + 1} {name}: {r['rps']:.1f} req/s, p50 {r['p50']:.0f} ms, "
                          f"{r['errors']} errors", file=sys.stderr, flush=True)
                finally:
                    os.killpg(proc.pid, 15)
                    proc.wait(60)
    finally:
        _stop(c)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--index", type=Path, default=ROOT / "index",
                        help="the index `serve --ray` answers from")
    parser.add_argument("--only", choices=["indexing", "serving"])
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.only != "serving":
        with tempfile.TemporaryDirectory() as sub:
            corpus = _subset(args.corpus, args.limit, Path(sub))
            rates = indexing(corpus, args.runs)
        print(f"\nIndexing the first {args.limit} files of {args.corpus.name} into 2 shards "
              f"(median of {args.runs}, documents/s):\n")
        print("| build | documents/s | runs |\n|---|---:|---|")
        for name, values in rates.items():
            print(f"| {name} | {statistics.median(values):.2f} | "
                  f"{', '.join(f'{v:.2f}' for v in values)} |")
    if args.only == "indexing":
        return
    rps = serving(args.index, args.seconds, args.runs)
    print(f"\n`/ask` at 8 clients, {args.seconds:g} s, on the two-node cluster (median of "
          f"{args.runs}, requests/s):\n")
    print("| serve --ray | requests/s | runs |\n|---|---:|---|")
    for name, values in rps.items():
        print(f"| {name} | {statistics.median(values):.1f} | "
              f"{', '.join(f'{v:.1f}' for v in values)} |")


if __name__ == "__main__":
    main()
