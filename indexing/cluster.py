"""Indexing on a Ray cluster: annotation and embedding as a Ray Data pipeline.

`connect` joins a running cluster, failing fast with one line when the address cannot
be reached. `RayProcessor` splits the articles into batches that a pool of actors
(one per CPU the cluster offers, each holding spaCy and the embedder) annotates and
embeds; the driver receives the finished documents in order and writes them into the
index (or its shards) exactly as a single-machine build does, so the result is the same
index. Ray is an optional dependency (`pip install 'article-qa[ray]'`).
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from indexing.articles import Article
from indexing.errors import ArticleQAError

# Documents per Ray Data batch: one actor call annotates and embeds this many.
RAY_BATCH_DOCUMENTS = 16
CONNECT_TIMEOUT_S = 5.0
NAMESPACE = "article-qa"
ACTOR_START_TIMEOUT_S = 300


class ClusterError(ArticleQAError, RuntimeError):
    """The Ray cluster is unreachable or unusable; the message says what to do."""


def _ray():
    try:
        import ray
    except ImportError:
        raise ClusterError("Ray is not installed; install the extra with "
                           "`pip install 'article-qa[ray]'` (make test installs it)") from None
    return ray


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a `HOST:PORT` address; None for `auto`."""
    if address == "auto":
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"Ray address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379) "
                           "or `auto`")
    return host.strip("[]"), int(port)


def connect(address: str):
    """Join the Ray cluster at `address` (HOST:PORT of its head, or `auto` on a node of a
    running cluster). Returns the `ray` module. Never hangs on a wrong address."""
    # Ray Data logs each dataset's plan at INFO on the driver's stderr: keep the CLI quiet.
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
    ray = _ray()
    hint = ("start one with `ray start --head --port 6379` and pass its address, or `auto` "
            "on a machine of the cluster")
    place = parse_address(address)
    if place is not None:
        try:
            socket.create_connection(place, timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise ClusterError(f"cannot reach a Ray cluster at {address} "
                               f"({exc.strerror or exc}); {hint}") from None
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                 logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot join a Ray cluster at {address} "
                           f"({str(exc).splitlines()[0][:200]}); {hint}") from None
    return ray


@dataclass(frozen=True, slots=True)
class IndexerSpec:
    """What an actor needs to build the driver's `Indexer` on its own node."""

    model: str
    chunk_tokens: int
    chunk_overlap: int
    backend: str | None


class _Annotator:
    """A Ray Data actor: spaCy and the embedder loaded once, then batch after batch."""

    def __init__(self, spec: IndexerSpec):
        from indexing.chunking import ChunkParams
        from indexing.embedding import Embedder
        from indexing.pipeline import Indexer

        # One CPU per actor: one embedding call at a time.
        embedder = Embedder(spec.model, backend=spec.backend, workers=1)
        self.indexer = Indexer(model=spec.model, embedder=embedder,
                               chunk=ChunkParams(spec.chunk_tokens, spec.chunk_overlap))

    def __call__(self, batch: dict) -> dict:
        import numpy as np
        import ray

        articles = [pickle.loads(b) for b in batch["article"]]
        docs = self.indexer.process(articles)
        node = ray.get_runtime_context().get_node_id()
        # The article travels back with its document: the driver writes what it gets.
        return {"document": np.array([pickle.dumps(d, protocol=5) for d in docs],
                                     dtype=object),
                "node": np.array([node] * len(docs), dtype=object)}


class RayProcessor:
    """Annotates and embeds articles on the cluster; yields finished documents in order."""

    def __init__(self, address: str, actors: int | None = None,
                 batch_documents: int = RAY_BATCH_DOCUMENTS):
        self.ray = connect(address)
        self.address = address
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        self.actors = max(1, actors or cpus)
        self.batch_documents = batch_documents
        self.nodes: set[str] = set()  # the nodes whose actors did the work

    def process(self, indexer, articles: Sequence[Article]) -> Iterator[list]:
        """Batches of IndexedDocuments for `articles`, in their order."""
        if not articles:
            return
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        # The input rows all live on the driver's node; locality would keep every batch
        # on that node's actor (deprecated in Ray 2.60, still honoured).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ctx.execution_options.actor_locality_enabled = False
        ctx.enable_progress_bars = False
        # Start once every actor holds its models (so the work spreads over the nodes),
        # and fail rather than wait forever when the cluster cannot place them.
        ctx.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
        spec = IndexerSpec(indexer.embedder.name, indexer.chunk.target_tokens,
                           indexer.chunk.overlap_sentences, indexer.embedder.backend)
        rows = [{"article": pickle.dumps(a, protocol=5)} for a in articles]
        batches = -(-len(rows) // self.batch_documents)
        # A block per batch, and at most two queued per actor: an actor that loads its
        # models first must not take every block before the others are ready.
        ds = ray.data.from_items(rows, override_num_blocks=batches)
        ds = ds.map_batches(_Annotator, fn_constructor_kwargs={"spec": spec},
                            batch_size=self.batch_documents, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(
                                size=min(self.actors, batches), max_tasks_in_flight_per_actor=2),
                            num_cpus=1)
        for batch in ds.iter_batches(batch_size=self.batch_documents, batch_format="numpy",
                                     prefetch_batches=2):
            self.nodes.update(batch["node"])
            yield [pickle.loads(b) for b in batch["document"]]
