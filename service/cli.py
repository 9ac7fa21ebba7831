"""The `article-qa` command line: index, serve, ask.

The `eval` group lives in eval/cli.py, which adds itself to `main`; the console
script points there so that `service` never imports `eval` (DESIGN.md).
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from indexing.errors import ArticleQAError
from service.settings import Settings


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def friendly_errors(fn):
    """Turn domain errors into one 'error: ...' line and a non-zero exit, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ArticleQAError as exc:
            _fail(str(exc))
        except (ValueError, OSError, RuntimeError, sqlite3.Error) as exc:
            _fail(f"{exc.__class__.__name__}: {exc}")
        except KeyboardInterrupt:
            _fail("interrupted", 130)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Extractive question answering over news articles, with exact citations."""


# -- index ---------------------------------------------------------------------------
@main.group()
def index() -> None:
    """Build and update the index directory."""


index_option = click.option("--index", "index_dir", type=click.Path(path_type=Path), default=None,
                            help="index directory [env ARTICLE_QA_INDEX; default ./index]")
model_option = click.option("--model", default=None,
                            help="embedding model name or path [default all-MiniLM-L6-v2]")
min_confidence_option = click.option(
    "--min-confidence", type=click.FloatRange(0.0, 1.0), default=None,
    help="confidence an answer needs, else no answer; higher answers less often but more "
         "often right [env ARTICLE_QA_MIN_CONFIDENCE; default: the reader model's own cut]")


def _indexer(settings: Settings):
    from indexing.chunking import ChunkParams
    from indexing.pipeline import Indexer

    return Indexer(model=settings.model,
                   chunk=ChunkParams(settings.chunk_tokens, settings.chunk_overlap),
                   index_type=settings.index_type, index_threshold=settings.index_threshold)


@index.command("build")
@click.option("--corpus", type=click.Path(path_type=Path), default=None,
              help="a .txt/.jsonl file or a directory read recursively [default data/articles]")
@index_option
@model_option
@click.option("--rebuild", is_flag=True, help="discard the existing index and build from scratch")
@click.option("--chunk-tokens", type=click.IntRange(16, 2048), default=None,
              help="target chunk size in cl100k tokens [default 160]")
@click.option("--chunk-overlap", type=click.IntRange(0, 10), default=None,
              help="sentences shared by consecutive chunks [default 1]")
@click.option("--index-type", type=click.Choice(["auto", "flat", "ivf", "hnsw"]), default=None,
              help="vector index: exact flat, approximate ivf/hnsw, or auto (flat below "
                   "ARTICLE_QA_INDEX_THRESHOLD chunks, ivf above) [env ARTICLE_QA_INDEX_TYPE; "
                   "default: what the index records, auto for a new one]")
@click.option("--shards", type=click.IntRange(1, 256), default=None,
              help="split a new (or --rebuild) index into N shards, searched together; an "
                   "existing sharded index keeps its count")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="annotate and embed on the Ray cluster at ADDRESS (HOST:PORT of its head, "
                   "or auto); the index is written here [needs article-qa[ray]]")
@friendly_errors
def index_build(corpus, index_dir, model, rebuild, chunk_tokens, chunk_overlap, index_type,
                shards, ray_address) -> None:
    """Index a corpus; incremental (unchanged documents are skipped) unless --rebuild."""
    from indexing.pipeline import build
    from indexing.shards import set_index_choice

    s = Settings().with_overrides(corpus=corpus, index=index_dir, model=model,
                                  chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap,
                                  index_type=index_type)
    processor = None
    if ray_address is not None:  # joined first: a wrong address fails before models load
        from indexing.cluster import RayProcessor

        processor = RayProcessor(ray_address)
        click.echo(f"indexing on the Ray cluster at {ray_address} ({processor.actors} "
                   "annotation actors)", err=True)
    report = build(s.corpus, s.index, _indexer(s), rebuild=rebuild, progress=sys.stderr.isatty(),
                   warn=lambda m: click.echo(m, err=True), shards=shards, processor=processor)
    if processor is not None:
        click.echo(f"annotated and embedded on {len(processor.nodes)} Ray node(s)", err=True)
    # A build that found nothing to re-embed wrote nothing: apply a new choice on its own.
    set_index_choice(s.index, s.index_type, s.index_threshold)
    click.echo(f"indexed {s.corpus} -> {s.index}: {report.summary()}")


@index.command("add")
@index_option
@model_option
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@friendly_errors
def index_add(index_dir, model, files) -> None:
    """Add (or replace) the articles in FILES without a full rebuild."""
    from indexing.articles import Article, iter_corpus
    from indexing.errors import CorpusError
    from indexing.pipeline import add_articles

    s = Settings().with_overrides(index=index_dir, model=model)
    articles = []
    for path in files:
        for item in iter_corpus(path):
            if isinstance(item, Article):
                articles.append(item)
            else:
                click.echo(f"warning: {item}", err=True)
    if not articles:
        raise CorpusError("nothing to add: no readable article in the given files")
    report = add_articles(s.index, articles, _indexer(s))
    click.echo(f"added {len(articles)} -> {s.index}: {report.summary()}")


@index.command("remove")
@index_option
@click.argument("doc_ids", nargs=-1, required=True)
@friendly_errors
def index_remove(index_dir, doc_ids) -> None:
    """Remove documents by doc_id."""
    from indexing.pipeline import remove_documents

    s = Settings().with_overrides(index=index_dir)
    report = remove_documents(s.index, list(doc_ids))
    click.echo(f"removed {len(doc_ids)} from {s.index}: {report.summary()}")


@index.command("info")
@index_option
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@friendly_errors
def index_info(index_dir, as_json) -> None:
    """Documents, chunks, model, sizes and build time of an index."""
    from indexing.shards import ShardedIndex, open_index

    s = Settings().with_overrides(index=index_dir)
    ix = open_index(Path(s.index))
    m = ix.manifest
    sizes = ix.size_bytes()
    sharded = isinstance(ix, ShardedIndex)
    info = {
        "index": str(s.index),
        "generation": (", ".join(f"{n} {g}" for n, g in ix.live.shards) if sharded
                       else ix.generation.name),
        **({"shards": [{"shard": n, "generation": g, "documents": sh.document_count,
                        "chunks": sh.chunk_count, "index_type": sh.manifest.index_type,
                        "total_bytes": sum(sh.size_bytes().values())}
                       for (n, g), sh in zip(ix.live.shards, ix.shards)]} if sharded else {}),
        "documents": ix.document_count, "chunks": ix.chunk_count,
        "model": m.model, "dim": m.dim, "tokenizer": m.tokenizer, "spacy_model": m.spacy_model,
        "chunk_target_tokens": m.chunk_target_tokens,
        "chunk_overlap_sentences": m.chunk_overlap_sentences,
        "format_version": m.format_version, "size_bytes": sizes,
        "index_type": m.index_type, "index_params": m.index_params,
        "total_bytes": sum(sizes.values()), "last_build_seconds": m.last_build_seconds,
        "updated_at": datetime.fromtimestamp(m.updated_at, UTC).isoformat(timespec="seconds"),
    }
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        if key == "size_bytes":
            value = ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in value.items())
        if key == "shards":
            value = "; ".join(f"{v['shard']}: {v['documents']} documents, {v['chunks']} chunks, "
                              f"{v['index_type']}, {v['total_bytes'] / 1e6:.2f} MB" for v in value)
        click.echo(f"{key:>24}: {value}")


# -- serve / ask -----------------------------------------------------------------------
@main.command()
@index_option
@click.option("--host", default=None, help="bind address [default 127.0.0.1]")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="port [default 8000]")
@click.option("--corpus", type=click.Path(path_type=Path), default=None,
              help="corpus indexed first when the index directory is empty [data/articles]")
@click.option("--allow-open-writes", is_flag=True, default=False,
              help="bind a non-loopback --host although POST/DELETE /documents need no key "
                   "(ARTICLE_QA_API_KEY unset) [env ARTICLE_QA_ALLOW_OPEN_WRITES]")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="server processes, each with its own models and index [1; env "
                   "ARTICLE_QA_WORKERS]")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="serve on the Ray cluster at ADDRESS (HOST:PORT of its head, or auto): "
                   "--replicas copies of the API behind Ray Serve's proxy at --host/--port "
                   "[needs article-qa[ray]]")
@click.option("--replicas", type=click.IntRange(1, 256), default=None,
              help="API replicas on Ray (with --ray) [2]")
@min_confidence_option
@friendly_errors
def serve(index_dir, host, port, corpus, allow_open_writes, workers, ray_address, replicas,
          min_confidence) -> None:
    """Start the HTTP API (builds the index first when the directory has none).

    Write routes are open unless ARTICLE_QA_API_KEY is set, so a non-loopback --host
    needs the key or --allow-open-writes.
    """
    if replicas is not None and ray_address is None:
        _fail("--replicas needs --ray ADDRESS (on one machine, use --workers N)", 2)
    if ray_address is not None and workers is not None:
        _fail("--workers is for one machine; on Ray, use --replicas N", 2)
    from service.security import RateLimit, is_loopback, writes_are_open

    s = Settings().with_overrides(index=index_dir, host=host, port=port, corpus=corpus,
                                  allow_open_writes=allow_open_writes or None, workers=workers,
                                  min_confidence=min_confidence)
    if not is_loopback(s.host) and writes_are_open(s) and not s.allow_open_writes:
        _fail(f"refusing to serve on {s.host}: anyone who can reach it could add and delete "
              "documents. Set ARTICLE_QA_API_KEY (clients then send `Authorization: Bearer "
              "<key>`), bind 127.0.0.1, or pass --allow-open-writes to accept that", 2)
    RateLimit.parse(s.rate_limit, s.rate_burst)  # a typo fails now, not after the models load
    # Check the index before importing and loading the models (seconds), so a damaged one
    # fails fast and clearly; then load (and build) before binding.
    _verify_index(Path(s.index))
    if ray_address is not None:
        from indexing.cluster import connect
        from service.qa import ensure_index
        from service.ray_serve import serve_on_ray

        connect(ray_address)  # a wrong address fails before any indexing
        ensure_index(s)  # built here, once, before any replica opens it
        serve_on_ray(s, ray_address, replicas or 2, echo=lambda m: click.echo(m, err=True))
        return
    import uvicorn

    from service.app import create_app
    from service.qa import QAPipeline

    if s.workers > 1:
        # Each worker process imports the app factory and reads its settings from the
        # environment, so the flags are passed on there; the index is built (if empty)
        # once, here, before any worker starts. Rate limits are counted per worker.
        from service.qa import ensure_index

        ensure_index(s)
        os.environ.update({"ARTICLE_QA_INDEX": str(s.index), "ARTICLE_QA_CORPUS": str(s.corpus)})
        if s.min_confidence is not None:
            os.environ["ARTICLE_QA_MIN_CONFIDENCE"] = repr(s.min_confidence)
        click.echo(f"serving with {s.workers} workers on http://{s.host}:{s.port}", err=True)
        uvicorn.run("service.app:app_from_environment", factory=True, workers=s.workers,
                    host=s.host, port=s.port, log_level="info")
        return
    pipeline = QAPipeline.load(s, build_if_empty=True)
    click.echo(f"serving {pipeline.index.document_count} documents on http://{s.host}:{s.port}",
               err=True)
    uvicorn.run(create_app(s, pipeline=pipeline), host=s.host, port=s.port, log_level="info")


def _verify_index(index_dir: Path) -> None:
    """Raise CorruptIndexError unless the index (if there is one) opens, its store passes
    SQLite's quick_check and every document matches the hash the manifest records."""
    from indexing.shards import ShardedIndex, index_exists, open_index, rebuild_advice

    if not index_exists(index_dir):
        return  # serve builds it
    ix = open_index(index_dir)
    try:
        if isinstance(ix, ShardedIndex):
            fix = rebuild_advice(index_dir, len(ix.shards))
            for (name, _), shard in zip(ix.live.shards, ix.shards):
                _verify_part(shard, f"{index_dir} (shard {name})", fix)
        else:
            _verify_part(ix, str(index_dir), rebuild_advice(index_dir))
    finally:
        ix.close()


def _verify_part(ix, index_dir: str, fix: str) -> None:
    """`_verify_index` of one store (an index, or one shard of a sharded index)."""
    import sqlite3

    from indexing.articles import Article
    from indexing.errors import CorruptIndexError

    try:
        check = ix.conn().execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise CorruptIndexError(f"index {index_dir}: store.sqlite fails its integrity check "
                                    f"({check.splitlines()[-1][:160]}); {fix}")
        recorded = ix.manifest.documents
        rows = ix.conn().execute("SELECT doc_id, title, summary, source, url, published, uuid, "
                                 "text FROM documents")
        for doc_id, title, summary, source, url, published, uuid, text in rows:
            article = Article(doc_id=doc_id, text=text, title=title, summary=summary,
                              source=source, url=url, published=published, uuid=uuid)
            if recorded.get(doc_id) != article.content_hash:
                raise CorruptIndexError(f"index {index_dir}: document {doc_id!r} does not match "
                                        f"the hash in its manifest; {fix}")
        if getattr(ix.manifest, "index_type", "flat") == "flat" and not _unit_vectors(ix):
            # A flat index stores the embeddings exactly, and the embedder normalises them.
            raise CorruptIndexError(f"index {index_dir}: vectors.faiss holds vectors that are "
                                    f"not the unit-length embeddings written; {fix}")
        if not _unit_sentence_vectors(ix):
            raise CorruptIndexError(f"index {index_dir}: store.sqlite holds sentence vectors "
                                    f"that are not the unit-length embeddings written; {fix}")
    except sqlite3.Error as exc:
        raise CorruptIndexError(f"index {index_dir}: store.sqlite is unreadable ({exc}); "
                                f"{fix}") from None


def _unit_vectors(ix, batch: int = 8192) -> bool:
    import numpy as np

    ids = np.array(sorted(ix.chunk_refs), dtype=np.int64)
    for i in range(0, len(ids), batch):
        try:
            stored = ix.vectors.reconstruct_batch(ids[i:i + batch])
        except RuntimeError:  # an id the store has and the vectors lack
            return False
        if not np.isfinite(stored).all() or \
                np.abs(np.linalg.norm(stored, axis=1) - 1.0).max() > 1e-3:
            return False
    return True


def _unit_sentence_vectors(ix) -> bool:
    import numpy as np

    dim = ix.manifest.dim
    for (blob,) in ix.conn().execute("SELECT vector FROM sentences"):
        v = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
        # float16 keeps about three digits: a norm within 1% of 1 is intact.
        if v.shape != (dim,) or not np.isfinite(v).all() or abs(np.linalg.norm(v) - 1) > 0.01:
            return False
    return True


def _highlight(quote: str, start: int, end: int) -> str:
    """The quote with the answer in bold on a terminal, or between ** when piped."""
    answer = quote[start:end]
    marked = (click.style(answer, bold=True, underline=True) if sys.stdout.isatty()
              else f"**{answer}**")
    return quote[:start] + marked + quote[end:]


@main.command()
@click.argument("question")
@index_option
@click.option("--top-k", type=click.IntRange(1, 50), default=5, help="passages to show")
@click.option("--json", "as_json", is_flag=True, help="print the POST /ask response body")
@min_confidence_option
@friendly_errors
def ask(question, index_dir, top_k, as_json, min_confidence) -> None:
    """Answer one QUESTION from the terminal."""
    from service.qa import QAPipeline
    from service.schemas import ask_response

    s = Settings().with_overrides(index=index_dir, min_confidence=min_confidence)
    result = QAPipeline.load(s).ask(question, top_k=top_k)
    if as_json:
        import msgspec

        click.echo(msgspec.json.format(msgspec.json.encode(ask_response(result)), indent=2))
        return
    if result.answer is None:
        click.echo(f"No answer in the indexed articles (best confidence {result.confidence:.2f}).")
        return
    click.echo(f"Answer: {result.answer}   (confidence {result.confidence:.2f})")
    if result.conflict:
        click.echo("Sources disagree:")
    for i, a in enumerate(result.answers, start=1):
        click.echo(f"\n[{i}] {a.text}  (confidence {a.confidence:.2f}, "
                   f"{a.support} article{'s' if a.support != 1 else ''})")
        for c in a.citations:
            click.echo(f"    {c.source or 'unknown source'} · {c.doc_id} [{c.start}:{c.end}]")
            click.echo(f"    \u201c{_highlight(c.quote, c.start - c.quote_start, c.end - c.quote_start)}\u201d")


if __name__ == "__main__":
    main()
