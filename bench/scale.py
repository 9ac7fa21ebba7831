"""Scale benchmark: the vector index types on 100k and 1M passages made from BBC sentences.

    python bench/scale.py                         # 100k and 1M; flat and ivf; 5 runs
    python bench/scale.py --quick                 # 100k only
    python bench/scale.py --types flat,ivf,hnsw --sizes 100000,1000000 --runs 5 --json out.json

Passages. Each generated passage is 2-5 sentences of one BBC article plus 0-2 sentences
of another article in the same category, all real sentences from the stored BBC index
(`--bbc-index`, the `sentences` table of an index built from ../shared/datasets/bbc-news);
no sentence set repeats. Embedding a million passages with MiniLM is out of reach on
this CPU (~100 texts/s), so a passage's vector is the L2-normalised mean of its sentences'
stored MiniLM vectors, not an embedding of its text. Without a BBC index the sentences
come from `--corpus` with a regex splitter and a sample of them is embedded here.

Queries. `--queries` BBC headlines (titles of the stored documents), embedded with
MiniLM as the service embeds a question. Ground truth is exact inner-product top-10.

Per size and index type, each run builds the index in a fresh process (build seconds,
bytes on disk) and opens it in another, as `Index.open` does (memory-mapped), to measure
the RSS it adds (anonymous memory plus the mapped file pages the queries touched;
`--read plain` reads the index into memory instead), the open time, single-query latency
through `indexing.vectors.search` (what `Index.search_dense` calls; k=10, one query at a
time) and recall@10 against exact search, unfiltered and with a doc_ids-style filter to
the passages of the query's own article.

Tables report the median over runs with min and max. Temporary files go to a temporary
directory (`--tmp`) that is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

K = 10
DEFAULT_BBC = Path("/tmp/bbc")
DEFAULT_CORPUS = ROOT.parent / "shared" / "datasets" / "bbc-news"
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


@dataclass(frozen=True, slots=True)
class SentencePool:
    """Real sentences to recombine: each one's article and its unit vector."""

    doc_ids: list[str]  # article ids, sorted; a sentence's article is an index into this
    article: np.ndarray  # (n,) int32, ascending
    vectors: np.ndarray  # (n, dim) float32
    titles: list[str]  # headline per article
    source: str


# -- sentences ---------------------------------------------------------------------
def find_bbc_store(path: Path) -> Path | None:
    """The live store.sqlite of the index at `path` or of the first index directly under it."""
    from indexing.store import STORE, live_generation

    for candidate in [path, *sorted(p for p in path.iterdir() if p.is_dir())] if path.is_dir() else []:
        try:
            generation = live_generation(candidate)
        except Exception:
            continue
        if generation is not None and (generation / STORE).is_file():
            return generation / STORE
    return None


def pool_from_store(store: Path) -> SentencePool:
    """Sentences and their stored float16 MiniLM vectors, read-only from an index's store."""
    conn = sqlite3.connect(f"file:{store}?mode=ro&immutable=1", uri=True)
    try:
        rows = conn.execute("SELECT doc_id, vector FROM sentences ORDER BY doc_id, ord").fetchall()
        titles = dict(conn.execute("SELECT doc_id, coalesce(title, '') FROM documents"))
    finally:
        conn.close()
    doc_ids = sorted({r[0] for r in rows})
    number = {d: i for i, d in enumerate(doc_ids)}
    article = np.array([number[r[0]] for r in rows], dtype=np.int32)
    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float16)
    return SentencePool(doc_ids, article, vectors.reshape(len(rows), -1).astype(np.float32),
                        [titles[d] for d in doc_ids], f"stored sentence vectors of {store}")


def pool_from_corpus(corpus: Path, sample: int, seed: int) -> SentencePool:
    """Regex-split the raw corpus and embed `sample` sentences with MiniLM (slow: ~100/s)."""
    from indexing.embedding import Embedder

    doc_ids, titles, sentences = [], [], []
    for path in sorted(corpus.rglob("*.txt")):
        try:
            lines = path.read_text(encoding="utf-8").strip().splitlines()
        except UnicodeDecodeError:
            continue
        if len(lines) < 2:
            continue
        body = " ".join(line.strip() for line in lines[1:] if line.strip())
        sents = [s for s in _SENTENCE_END.split(body) if len(s.split()) >= 4]
        if sents:
            doc_ids.append(f"{path.parent.name}:{path.stem}")
            titles.append(lines[0].strip())
            sentences.extend((len(doc_ids) - 1, s) for s in sents)
    # Whole articles, so that passages can take several sentences of one article.
    rng = np.random.default_rng(seed)
    chosen, wanted = [], set()
    for a in rng.permutation(len(doc_ids)):
        if len(chosen) >= sample:
            break
        wanted.add(int(a))
        chosen.extend(s for s in sentences if s[0] == a)
    chosen.sort(key=lambda s: s[0])
    vectors = Embedder().encode([s for _, s in chosen], progress=True)
    article = np.array([a for a, _ in chosen], dtype=np.int32)
    used = np.unique(article)
    renumber = np.full(len(doc_ids), -1)
    renumber[used] = np.arange(len(used))
    return SentencePool([doc_ids[i] for i in used], renumber[article].astype(np.int32), vectors,
                        [titles[i] for i in used],
                        f"{len(chosen)} regex-split sentences of {corpus}, embedded with MiniLM")


# -- passages and queries --------------------------------------------------------------
def generate(pool: SentencePool, n: int, seed: int = 0, batch: int = 50_000
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` distinct passages: (sentence ids (n, 7), padded with -1; main article; unit vectors).

    A passage is 2-5 sentences of one article and 0-2 of another article in the same
    category (the part of the doc_id before ':'); its vector is the normalised mean of
    its sentences' vectors.
    """
    rng = np.random.default_rng(seed)
    narticles = len(pool.doc_ids)
    first = np.searchsorted(pool.article, np.arange(narticles))
    size = np.bincount(pool.article, minlength=narticles)
    category = np.array([d.split(":")[0] for d in pool.doc_ids])
    _, cat_of = np.unique(category, return_inverse=True)
    members = [np.flatnonzero(cat_of == c) for c in range(cat_of.max() + 1)]
    counts = np.array([len(m) for m in members])
    mates = np.zeros((len(members), counts.max()), dtype=np.int64)  # articles per category
    for c, m in enumerate(members):
        mates[c, : len(m)] = m
    seen: set[bytes] = set()
    parts_ids, parts_main, total, barren = [], [], 0, 0
    while total < n:
        a = rng.integers(narticles, size=batch)
        b = mates[cat_of[a], rng.integers(0, counts[cat_of[a]])]
        la, lb = rng.integers(2, 6, size=batch), rng.integers(0, 3, size=batch)
        ids = np.full((batch, 7), -1, dtype=np.int64)
        own = (rng.random((batch, 5)) * size[a][:, None]).astype(np.int64) + first[a][:, None]
        other = (rng.random((batch, 2)) * size[b][:, None]).astype(np.int64) + first[b][:, None]
        ids[:, :5] = np.where(np.arange(5) < la[:, None], own, -1)
        ids[:, 5:] = np.where((np.arange(2) < lb[:, None]) & (b != a)[:, None], other, -1)
        ids.sort(axis=1)
        ok = ~((ids[:, 1:] == ids[:, :-1]) & (ids[:, 1:] >= 0)).any(axis=1)
        keep = []
        for i in np.flatnonzero(ok):
            key = ids[i].tobytes()
            if key not in seen:
                seen.add(key)
                keep.append(i)
        keep = keep[: n - total]
        barren = barren + 1 if len(keep) < batch // 100 else 0
        if barren > 20:
            raise SystemExit(f"only {total + len(keep):,} distinct passages can be made from "
                             f"{len(pool.vectors):,} sentences; use more sentences or fewer passages")
        parts_ids.append(ids[keep])
        parts_main.append(a[keep])
        total += len(keep)
    sentence_ids, main = np.concatenate(parts_ids), np.concatenate(parts_main).astype(np.int32)
    vectors = np.empty((n, pool.vectors.shape[1]), dtype=np.float32)
    for s in range(0, n, 20_000):
        block = sentence_ids[s: s + 20_000]
        mask = block >= 0
        v = (pool.vectors[np.where(mask, block, 0)] * mask[:, :, None]).sum(axis=1)
        vectors[s: s + 20_000] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return sentence_ids, main, vectors


def passage_text(store: Path, pool: SentencePool, sentence_ids: np.ndarray) -> str:
    """The text of one generated passage (to show what the generator makes)."""
    first = np.searchsorted(pool.article, np.arange(len(pool.doc_ids)))
    conn = sqlite3.connect(f"file:{store}?mode=ro&immutable=1", uri=True)
    try:
        parts = []
        for i in sentence_ids[sentence_ids >= 0]:
            doc_id = pool.doc_ids[pool.article[i]]
            start, end = conn.execute(
                'SELECT start, "end" FROM sentences WHERE doc_id = ? AND ord = ?',
                (doc_id, int(i - first[pool.article[i]]))).fetchone()
            text = conn.execute("SELECT text FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
            parts.append(text[0][start:end])
    finally:
        conn.close()
    return " ".join(parts)


def headline_queries(pool: SentencePool, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(query vectors, their article) for `n` headlines embedded with MiniLM."""
    from indexing.embedding import Embedder

    rng = np.random.default_rng(seed)
    have = [i for i, t in enumerate(pool.titles) if t.strip()]
    pick = np.sort(rng.choice(have, min(n, len(have)), replace=False))
    return Embedder().encode([pool.titles[i] for i in pick]), pick.astype(np.int32)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact inner-product top-k ids per query, best first (blocked over the passages)."""
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for s in range(0, len(vectors), 100_000):
        scores = queries @ vectors[s: s + 100_000].T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(scores, top, 1)], axis=1)
        best_i = np.concatenate([best_i, top + s], axis=1)
        order = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)
    return best_i


# -- workers (each in a fresh process) ----------------------------------------------------
def _rss_mb() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


def build_worker(kind: str, vectors_path: str, index_path: str, seed: int) -> dict:
    """Build one index from the saved passage vectors; ids are the passage numbers."""
    import faiss

    from indexing import vectors as vector_index

    x = np.load(vectors_path)
    ids = np.arange(len(x), dtype=np.int64)
    started = time.perf_counter()
    index, params = vector_index.build(kind, x.shape[1], ids, x, seed=seed)
    seconds = time.perf_counter() - started
    faiss.write_index(index, index_path)
    return {"build_s": seconds, "params": params, "disk_mb": os.path.getsize(index_path) / 1e6,
            "build_peak_rss_mb": _rss_mb()["VmHWM"]}


SWEEP = {"ivf": ("nprobe", [8, 16, 32, 64, 128]),
         "hnsw": ("ef_search", [64, 128, 256, 384, 512, 768])}


def _timed(vector_index, index, kind, params, queries, truth) -> tuple[np.ndarray, float]:
    latencies, hits = [], []
    for q, t in zip(queries, truth):
        t0 = time.perf_counter()
        _, ids = vector_index.search(index, kind, params, q, K)
        latencies.append(time.perf_counter() - t0)
        hits.append(len(set(ids.tolist()) & set(t.tolist())) / K)
    return np.array(latencies) * 1e3, float(np.mean(hits))


def query_worker(kind: str, params: dict, index_path: str, queries_path: str,
                 truth_path: str, filters_path: str, limit: int, mmap: bool,
                 sweep: bool) -> dict:
    """Open the index as Index.open does and time single queries through vectors.search."""
    import faiss

    from indexing import vectors as vector_index

    queries, truth = np.load(queries_path)[:limit], np.load(truth_path)[:limit]
    filt = np.load(filters_path)
    allowed = np.split(filt["ids"], filt["offsets"][1:-1])[:limit]
    before = _rss_mb()
    started = time.perf_counter()
    index = vector_index.read(index_path) if mmap else faiss.read_index(index_path)
    open_s = time.perf_counter() - started
    for q in queries[:10]:  # warm-up
        vector_index.search(index, kind, params, q, K)
    ms, recall = _timed(vector_index, index, kind, params, queries, truth)
    f_latencies, f_hits = [], []
    for q, a, t in zip(queries, allowed, filt["truth"]):
        if len(a) == 0:  # the article has no passage at this size; search_dense returns []
            continue
        t0 = time.perf_counter()
        _, ids = vector_index.search(index, kind, params, q, K, a)
        f_latencies.append(time.perf_counter() - t0)
        want = {i for i in t.tolist() if i >= 0}
        f_hits.append(len(set(ids.tolist()) & want) / max(1, len(want)))
    after = _rss_mb()
    swept = []
    if sweep and kind in SWEEP:
        name, values = SWEEP[kind]
        for value in values:
            s_ms, s_recall = _timed(vector_index, index, kind, {**params, name: value},
                                    queries, truth)
            swept.append({name: value, "p50_ms": float(np.percentile(s_ms, 50)),
                          "p95_ms": float(np.percentile(s_ms, 95)), "recall": s_recall})
    return {
        "open_s": open_s,
        "rss_mb": after["VmRSS"] - before["VmRSS"],
        "rss_anon_mb": after["RssAnon"] - before["RssAnon"],
        "rss_file_mb": after["RssFile"] - before["RssFile"],
        "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
        "recall": recall,
        "filtered_p50_ms": float(np.percentile(np.array(f_latencies) * 1e3, 50)),
        "filtered_recall": float(np.mean(f_hits)),
        "queries": len(queries),
        "sweep": swept,
    }


def _in_fresh_process(fn, *args):
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# -- driver ------------------------------------------------------------------------------
def filtered_truth(vectors: np.ndarray, main: np.ndarray, queries: np.ndarray,
                   query_article: np.ndarray) -> dict[str, np.ndarray]:
    """Per query: the passages whose main article is the query's (a doc_ids filter), and
    the exact top-k among them."""
    order = np.argsort(main, kind="stable")
    bounds = np.searchsorted(main[order], np.arange(main.max() + 2))
    ids, offsets, truth = [], [0], []
    for q, a in zip(queries, query_article):
        allowed = order[bounds[a]: bounds[a + 1]] if a <= main.max() else order[:0]
        top = allowed[np.argsort(-(vectors[allowed] @ q), kind="stable")[:K]]
        ids.append(allowed)
        offsets.append(offsets[-1] + len(allowed))
        truth.append(np.pad(top, (0, K - len(top)), constant_values=-1))
    return {"ids": np.concatenate(ids).astype(np.int64), "offsets": np.array(offsets),
            "truth": np.array(truth, dtype=np.int64)}


def _stat(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _fmt(stat: dict[str, float], digits: int) -> str:
    return (f"{stat['median']:.{digits}f} ({stat['min']:.{digits}f}–{stat['max']:.{digits}f})")


METRICS = [("build_s", "build s", 1), ("disk_mb", "disk MB", 0), ("rss_mb", "RSS MB", 0),
           ("rss_anon_mb", "of which anon MB", 0), ("open_s", "open s", 2), ("p50_ms", "p50 ms", 2), ("p95_ms", "p95 ms", 2),
           ("recall", "recall@10", 3), ("filtered_p50_ms", "filtered p50 ms", 2),
           ("filtered_recall", "filtered recall@10", 3)]


def sweep_stats(runs: list[dict]) -> list[dict]:
    """Median (min, max) over runs of each swept parameter value's p50, p95 and recall."""
    if not runs[0]["sweep"]:
        return []
    name = next(k for k in runs[0]["sweep"][0] if k not in ("p50_ms", "p95_ms", "recall"))
    return [{"param": name, "value": point[name],
             **{m: _stat([run["sweep"][i][m] for run in runs])
                for m in ("p50_ms", "p95_ms", "recall")}}
            for i, point in enumerate(runs[0]["sweep"])]


def sweep_markdown(results: list[dict]) -> str:
    lines = ["| passages | type | parameter | p50 ms | p95 ms | recall@10 |",
             "|---|---|---|---:|---:|---:|"]
    for r in results:
        for p in r.get("sweep", []):
            lines.append(f"| {r['passages']:,} | {r['type']} | {p['param']}={p['value']} | "
                         f"{_fmt(p['p50_ms'], 2)} | {_fmt(p['p95_ms'], 2)} | "
                         f"{_fmt(p['recall'], 3)} |")
    return "\n".join(lines)


def markdown(results: list[dict]) -> str:
    head = "| passages | type | " + " | ".join(label for _, label, _ in METRICS) + " |"
    lines = [head, "|---|---|" + "---:|" * len(METRICS)]
    for r in results:
        cells = [_fmt(r["stats"][key], d) for key, _, d in METRICS]
        lines.append(f"| {r['passages']:,} | {r['type']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000",
                        help="passage counts, comma-separated [100000,1000000]")
    parser.add_argument("--types", default="flat,ivf",
                        help="index types, comma-separated: flat,ivf,hnsw [flat,ivf]")
    parser.add_argument("--runs", type=int, default=5, help="runs per size and type [5]")
    parser.add_argument("--queries", type=int, default=300, help="headline queries [300]")
    parser.add_argument("--flat-queries", type=int, default=100,
                        help="of which flat times only the first N (it is exact and slow) [100]")
    parser.add_argument("--quick", action="store_true", help="100k passages only")
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    parser.add_argument("--bbc-index", type=Path, default=DEFAULT_BBC,
                        help="a BBC index (or a directory of them) to take sentences from")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help="raw BBC corpus, used when there is no BBC index")
    parser.add_argument("--sample-sentences", type=int, default=8000,
                        help="sentences embedded from --corpus when there is no BBC index")
    parser.add_argument("--read", choices=["mmap", "plain"], default="mmap",
                        help="open indexes memory-mapped, as Index.open does, or read them "
                             "into memory [mmap]")
    parser.add_argument("--sweep", action="store_true",
                        help="also time ivf nprobe / hnsw efSearch values on each built index")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temporary directory")
    args = parser.parse_args()

    import faiss

    from indexing.vectors import INDEX_TYPES

    sizes = [100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    types = args.types.split(",")
    for kind in types:
        if kind not in INDEX_TYPES:
            parser.error(f"unknown index type {kind!r}; choose from {', '.join(INDEX_TYPES)}")
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, "
               f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
               f"Python {platform.python_version()}, faiss {faiss.__version__}, "
               f"{faiss.omp_get_max_threads()} OpenMP threads, load average at start "
               f"{os.getloadavg()[0]:.1f}")
    print(f"machine: {machine}", flush=True)

    t = time.perf_counter()
    store = find_bbc_store(args.bbc_index)
    pool = (pool_from_store(store) if store is not None
            else pool_from_corpus(args.corpus, args.sample_sentences, args.seed))
    queries, query_article = headline_queries(pool, args.queries, args.seed + 1)
    print(f"{len(pool.vectors):,} sentences from {len(pool.doc_ids):,} articles "
          f"({pool.source}); {len(queries)} headline queries; {time.perf_counter() - t:.1f} s",
          flush=True)

    results = []
    tmp = Path(tempfile.mkdtemp(prefix="scale-", dir=args.tmp))
    try:
        np.save(tmp / "queries.npy", queries)
        for n in sizes:
            t = time.perf_counter()
            sentence_ids, main, vectors = generate(pool, n, args.seed)
            gen_s = time.perf_counter() - t
            if store is not None:
                print(f"example passage: {passage_text(store, pool, sentence_ids[0])[:300]}…")
            t = time.perf_counter()
            np.save(tmp / "truth.npy", exact_top_k(vectors, queries, K))
            np.savez(tmp / "filters.npz", **filtered_truth(vectors, main, queries, query_article))
            truth_s = time.perf_counter() - t
            np.save(tmp / "vectors.npy", vectors)
            print(f"{n:,} passages generated in {gen_s:.1f} s; exact ground truth "
                  f"{truth_s:.1f} s", flush=True)
            del vectors, sentence_ids
            for kind in types:
                runs = []
                for r in range(args.runs):
                    path = str(tmp / f"{kind}.faiss")
                    built = _in_fresh_process(build_worker, kind, str(tmp / "vectors.npy"), path,
                                              args.seed + r)
                    queried = _in_fresh_process(
                        query_worker, kind, built["params"], path, str(tmp / "queries.npy"),
                        str(tmp / "truth.npy"), str(tmp / "filters.npz"),
                        args.flat_queries if kind == "flat" else len(queries),
                        args.read == "mmap", args.sweep)
                    os.remove(path)
                    runs.append({**built, **queried})
                    print(f"  {n:,} {kind} run {r + 1}: " + ", ".join(
                        f"{k} {runs[-1][k]:.3f}" for k, _, _ in METRICS), flush=True)
                stats = {key: _stat([run[key] for run in runs]) for key, _, _ in METRICS}
                results.append({"passages": n, "type": kind, "params": runs[-1]["params"],
                                "stats": stats, "sweep": sweep_stats(runs), "runs": runs})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    table = markdown(results)
    if any(r["sweep"] for r in results):
        table += "\n\n" + sweep_markdown(results)
    print(f"\n{table}\n\nmedian (min–max) of {args.runs} runs; {len(queries)} queries "
          f"({args.flat_queries} for flat); k={K}; indexes opened {args.read}; {machine}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "runs": args.runs, "k": K,
                                         "read": args.read,
                                         "queries": len(queries), "sentences": pool.source,
                                         "results": results}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
