"""Embedding backends compared: texts/s on chunks and sentences, question latency, agreement.

    python bench/embedding.py --runs 5 [--threads 1,2] [--corpus DIR] [--docs 10] [--json PATH]

Texts are what the indexer embeds: the chunks and the sentences of `--docs` articles
(default: the first 10 BBC News files in ../shared/datasets/bbc-news, else data/articles);
questions are those of eval/datasets/bundled-dev.jsonl, embedded one at a time as /ask
does. Every backend (torch, onnx, onnx-int8) x thread count is measured once per run, the
variants interleaved in each run so that load from other processes falls on all of them
alike; figures are medians over runs. Agreement is the cosine to torch's vector on the
sentences. Prints a Markdown table; `--json` writes the raw figures too. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BBC = ROOT.parent / "shared" / "datasets" / "bbc-news"
QUESTIONS = ROOT / "eval" / "datasets" / "bundled-dev.jsonl"


def load_texts(corpus: Path, docs: int) -> tuple[list[str], list[str]]:
    """The chunk texts and sentence texts the indexer would embed for `docs` articles."""
    from indexing.articles import Article, iter_corpus
    from indexing.chunking import ChunkParams, chunk_document
    from indexing.embedding import Embedder
    from indexing.sentences import load_nlp, split_sentences

    articles = [a for a in iter_corpus(corpus) if isinstance(a, Article)][:docs]
    sentences = list(split_sentences(load_nlp(), [a.text for a in articles]))
    counter = Embedder(backend="onnx")  # only its tokenizer is used: equal to torch's
    chunks = [chunk_document(a.text, s, ChunkParams(), counter.count_tokens, counter.max_tokens)
              for a, s in zip(articles, sentences)]
    chunk_texts = [a.text[c.start:c.end] for a, cs in zip(articles, chunks) for c in cs]
    sent_texts = [a.text[s.start:s.end] for a, ss in zip(articles, sentences) for s in ss]
    return chunk_texts, sent_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs (median) [5]")
    parser.add_argument("--threads", default="1", help="intra-op thread counts, e.g. 1,2 [1]")
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--corpus", type=Path, default=BBC if BBC.is_dir() else ROOT / "data/articles")
    parser.add_argument("--docs", type=int, default=10, help="articles whose texts are embedded [10]")
    parser.add_argument("--questions", type=int, default=40, help="questions timed per run")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    import numpy as np
    import torch

    from indexing.embedding import Embedder

    chunks, sents = load_texts(args.corpus, args.docs)
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines()
                 if line.strip()][: args.questions]
    threads = [int(t) for t in args.threads.split(",")]
    backends = args.backends.split(",")
    variants = [(b, t) for b in backends for t in threads]
    sessions: dict[tuple[str, int], Embedder] = {}
    for b, t in variants:
        # torch's thread count is process-wide (set before each timing); ONNX Runtime's is
        # fixed per session, so each count gets its own session.
        same = next((e for (b2, _), e in sessions.items() if b2 == b), None)
        sessions[(b, t)] = same if b == "torch" and same else Embedder(backend=b, threads=t)
    print(f"{len(chunks)} chunks, {len(sents)} sentences from {args.docs} articles of "
          f"{args.corpus}; {len(questions)} questions; {args.runs} runs", file=sys.stderr)

    def set_threads(backend: str, n: int) -> None:
        if backend == "torch":
            torch.set_num_threads(n)

    set_threads(*variants[0])
    reference = sessions[variants[0]].encode(sents)
    figures = {f"{b}/{t}": {"chunks": [], "sentences": [], "question_ms": []} for b, t in variants}
    for run in range(args.runs):
        for b, t in variants:
            set_threads(b, t)
            emb = sessions[(b, t)]
            emb.encode(questions[:2])  # warm-up: first-call allocations
            row = figures[f"{b}/{t}"]
            started = time.perf_counter()
            emb.encode(chunks)
            row["chunks"].append(len(chunks) / (time.perf_counter() - started))
            started = time.perf_counter()
            emb.encode(sents)
            row["sentences"].append(len(sents) / (time.perf_counter() - started))
            lat = []
            for q in questions:
                started = time.perf_counter()
                emb.encode_one(q)
                lat.append((time.perf_counter() - started) * 1000)
            row["question_ms"].append(statistics.median(lat))
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)

    results = []
    base = None
    for b, t in variants:
        row = figures[f"{b}/{t}"]
        cos = (reference * sessions[(b, t)].encode(sents)).sum(axis=1)
        med = {k: statistics.median(v) for k, v in row.items()}
        base = base or med
        results.append({
            "backend": b, "threads": t, "runs": args.runs,
            "chunks_per_s": round(med["chunks"], 1), "sentences_per_s": round(med["sentences"], 1),
            "question_p50_ms": round(med["question_ms"], 2),
            "speedup_chunks": round(med["chunks"] / base["chunks"], 2),
            "speedup_sentences": round(med["sentences"] / base["sentences"], 2),
            "speedup_question": round(base["question_ms"] / med["question_ms"], 2),
            f"cos_to_{backends[0]}_min": round(float(cos.min()), 5),
            f"cos_to_{backends[0]}_median": round(float(np.median(cos)), 5),
            "raw": row,
        })

    print(f"\n{len(chunks)} chunks and {len(sents)} sentences ({args.docs} articles), "
          f"{len(questions)} questions; medians of {args.runs} interleaved runs; "
          f"{platform.machine()}, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}\n")
    print(f"| backend | threads | chunks/s | sentences/s | question p50 (ms) | speed-up vs "
          f"{backends[0]}/{threads[0]} (chunks, sentences, question) | cosine to {backends[0]} "
          "(min, median) |")
    print("|---|---:|---:|---:|---:|---|---|")
    for r in results:
        print(f"| {r['backend']} | {r['threads']} | {r['chunks_per_s']:.1f} | "
              f"{r['sentences_per_s']:.1f} | {r['question_p50_ms']:.2f} | "
              f"{r['speedup_chunks']:.2f}x, {r['speedup_sentences']:.2f}x, "
              f"{r['speedup_question']:.2f}x | {r[f'cos_to_{backends[0]}_min']:.4f}, "
              f"{r[f'cos_to_{backends[0]}_median']:.4f} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.machine(), "cores": os.cpu_count(),
                                         "corpus": str(args.corpus), "docs": args.docs,
                                         "chunks": len(chunks), "sentences": len(sents),
                                         "questions": len(questions), "results": results},
                                        indent=2))


if __name__ == "__main__":
    main()
