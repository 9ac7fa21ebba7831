"""`article-qa serve --ray ADDRESS --replicas N`: the same API on Ray Serve.

Two deployments:

* `api`: N replicas, each running the Litestar app (`service.app.app_from_environment`,
  the app `serve --workers` runs) with its own models and view of the index, so every
  route, the chat page, API keys and every error shape are the ones a single server has;
* `gateway`: the HTTP ingress behind Serve's proxy on the head node. It hands each
  request, whole, to an `api` replica and streams the reply back. When that replica
  dies before replying, a request that only reads (GET, /ask, /search, /chat) goes to
  another replica, so a client never sees the failure; a write gets a 503 that says
  so, because it may or may not have been applied.

The index directory must be at the same path on every node (shared storage). Serve
restarts a replica that dies.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import AsyncIterator

from indexing.cluster import ClusterError, connect
from service.settings import Settings

APP_NAME = "article-qa"
# CPUs an API replica reserves: its reader and embedder run one request at a time. The
# gateway only forwards bytes and reserves none, like Serve's own proxy.
REPLICA_CPUS = 1.0
GATEWAY_CPUS = 0.0
# Requests one replica takes at once before the proxy queues them at another.
MAX_ONGOING_REQUESTS = 8
# How long a reading request is retried while replicas die under it or restart (all of
# them may be down at once for the seconds a restart takes), and the longest pause.
RETRY_SECONDS = 60.0
MAX_BACKOFF_S = 2.0
# Scope keys a replica needs to rebuild the request (the rest is the proxy's own).
_SCOPE_KEYS = ("type", "http_version", "method", "scheme", "path", "raw_path",
               "query_string", "root_path", "headers", "client", "server")
_READING = {"/ask", "/search", "/chat"}


def _environment(settings: Settings) -> dict[str, str]:
    """The ARTICLE_QA_* variables a replica rebuilds `settings` from."""
    env = {k: v for k, v in os.environ.items() if k.startswith("ARTICLE_QA_")}
    env.update({"ARTICLE_QA_INDEX": str(os.path.abspath(settings.index)),
                "ARTICLE_QA_CORPUS": str(os.path.abspath(settings.corpus)),
                "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    if settings.min_confidence is not None:
        env["ARTICLE_QA_MIN_CONFIDENCE"] = repr(settings.min_confidence)
    return env


def _portable(scope: dict) -> dict:
    """The parts of an ASGI scope that cross to another process (bytes, str, tuples)."""
    out = {k: scope[k] for k in _SCOPE_KEYS if k in scope}
    out["headers"] = [(bytes(k), bytes(v)) for k, v in scope.get("headers", [])]
    for k in ("client", "server"):
        if out.get(k) is not None:
            out[k] = tuple(out[k])
    return out


def reads_only(scope: dict) -> bool:
    """Whether repeating the request on another replica changes nothing."""
    return scope["method"] in ("GET", "HEAD", "OPTIONS") or \
        (scope["method"] == "POST" and scope["path"] in _READING)


class API:
    """An `api` replica: the app, driven through its ASGI interface."""

    async def __init__(self):
        """Build the app and run its ASGI lifespan startup, which loads the pipeline (as
        under uvicorn). It runs here, before the replica takes requests, and not inside
        the first request: a client giving up on that request would cancel the load with
        it (Serve cancels what a cancelled request started). If it fails, the replica
        fails to start and Serve starts another."""
        from service.app import app_from_environment

        if os.environ.get("ARTICLE_QA_SHARD_SEARCHERS") == "ray":
            from indexing.shards import read_shards_through

            read_shards_through(_open_remote_shard)
        self.app = app_from_environment()
        lifespan: asyncio.Queue = asyncio.Queue()
        started: asyncio.Future = asyncio.get_running_loop().create_future()

        async def send(message):
            if message["type"].startswith("lifespan.startup") and not started.done():
                started.set_result(message)

        # The lifespan runs on for the replica's life; its shutdown is the process's end.
        self._lifespan = asyncio.ensure_future(self.app(
            {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, lifespan.get, send))
        await lifespan.put({"type": "lifespan.startup"})
        message = await started
        if message["type"].endswith("failed"):
            raise RuntimeError(f"the app did not start: {message.get('message', '')}")

    async def __call__(self, scope: dict, body: bytes) -> AsyncIterator[dict]:
        """The ASGI messages the app sends for one request, as it sends them."""
        messages: asyncio.Queue = asyncio.Queue()
        sent = False

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client stays connected

        async def send(message):
            await messages.put(message)

        scope = {**scope, "asgi": {"version": "3.0"}, "state": {}}
        task = asyncio.ensure_future(self.app(scope, receive, send))
        while True:
            getter = asyncio.ensure_future(messages.get())
            done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                message = getter.result()
                yield message
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    break
            else:
                getter.cancel()
                while not messages.empty():
                    yield messages.get_nowait()
                task.result()  # raises what the app raised
                break
        task.cancel()


class Gateway:
    """The HTTP ingress's ASGI app: forwards each request to an `api` replica."""

    def __init__(self):
        self._api = None

    @property
    def api(self):
        if self._api is None:
            from ray import serve

            self._api = serve.get_deployment_handle("api", app_name=APP_NAME).options(
                stream=True)
        return self._api

    async def __call__(self, scope, receive, send) -> None:
        from ray import exceptions

        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = _portable(scope)
        retry = reads_only(scope)
        deadline = time.monotonic() + RETRY_SECONDS
        pause = 0.1
        while True:
            started = False
            try:
                async for message in self.api.remote(request, bytes(body)):
                    started = True
                    await send(message)
                return
            except (exceptions.RayActorError, exceptions.ActorUnavailableError):
                if started:
                    raise  # part of the reply went out: the proxy ends the connection
                if not retry or time.monotonic() + pause > deadline:
                    detail = ("the replica answering this request stopped, and no other "
                              "answered in time; retry it" if retry else
                              "the replica handling this write stopped; it may or may not "
                              "have been applied: check, then retry it")
                    await _json(send, 503, {"status_code": 503, "detail": detail})
                    return
            await asyncio.sleep(pause)
            pause = min(2 * pause, MAX_BACKOFF_S)


def gateway_app() -> Gateway:
    """The gateway's ASGI app; Serve calls this builder on each gateway replica."""
    return Gateway()


async def _json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


# -- shard searchers --------------------------------------------------------------------
# What an API replica may ask a searcher of its shard (the `Index` methods ShardedIndex uses).
_SHARD_CALLS = frozenset({
    "texts", "metadata", "sentences", "document_frequency", "phrase_rows", "phrase_rows_many",
    "has_document", "document", "list_documents", "document_lengths", "chunk_ids",
    "chunk_refs_of", "size_bytes"})
# What an API replica keeps per shard generation (none of it changes within one): passage
# references (searches return their hits'), and texts, sentences, vectors and term counts.
REF_CACHE = 65536
DOCUMENT_CACHE = 1024


class ShardSearcher:
    """Holds one shard of a sharded index and answers the API replicas' questions about
    it: searches, passage references, texts, sentences, statistics."""

    def __init__(self, index_dir: str, name: str):
        from pathlib import Path

        self.dir = Path(index_dir) / name
        self.fix = f"rebuild it with `article-qa index build --index {index_dir} --rebuild`"
        self._open: dict = {}  # generation -> Index; replicas may be a write apart

    def _index(self, generation: str):
        from indexing.store import Index

        ix = self._open.get(generation)
        if ix is None:
            ix = Index.open(self.dir, generation=self.dir / generation, fix=self.fix)
            self._open[generation] = ix
            for old in list(self._open)[:-3]:  # the newest three stay open
                self._open.pop(old)
        return ix

    def summary(self, generation: str) -> dict:
        ix = self._index(generation)
        return {"manifest": ix.manifest.to_json(), "documents": ix.document_count,
                "chunks": ix.chunk_count, "fts_documents": ix.fts_documents,
                "tokens": ix.token_total(), "dim": ix.vectors.d, "ntotal": ix.vectors.ntotal}

    def call(self, generation: str, method: str, *args):
        if method not in _SHARD_CALLS:
            raise ValueError(f"a shard searcher does not answer {method!r}")
        return getattr(self._index(generation), method)(*args)

    def search(self, generation: str, kind: str, *args) -> tuple[list, list]:
        """Dense or lexical hits, with their passage references."""
        ix = self._index(generation)
        hits = (ix.search_dense if kind == "dense" else ix.search_lexical)(*args)
        return hits, ix.chunk_refs_of([cid for cid, _ in hits])

    def reconstruct(self, generation: str, cid: int):
        return self._index(generation).vectors.reconstruct(cid)

    def all_chunk_ids(self, generation: str) -> list[int]:
        return list(self._index(generation).chunk_refs)


class RemoteShard:
    """A shard as an API replica sees it: its searcher on the cluster, with the interface
    of `Index` that `ShardedIndex` uses."""

    def __init__(self, handle, generation: str):
        from indexing.cache import LRUCache
        from indexing.store import Manifest

        self._handle = handle
        self._generation = generation
        info = self._ask("summary")
        self.manifest = Manifest.from_json(info["manifest"])
        self.document_count = info["documents"]
        self.chunk_count = info["chunks"]
        self.fts_documents = info["fts_documents"]
        self._tokens = info["tokens"]
        self._refs: LRUCache = LRUCache(REF_CACHE)
        self._docs: LRUCache = LRUCache(DOCUMENT_CACHE)  # ("text"|"meta", doc_id) -> value
        self._sentences: LRUCache = LRUCache(DOCUMENT_CACHE)
        self._terms: LRUCache = LRUCache(REF_CACHE)
        self.vectors = _RemoteVectors(self, info["dim"], info["ntotal"])

    def _ask(self, method: str, *args):
        return getattr(self._handle, method).remote(self._generation, *args).result()

    def __getattr__(self, method: str):  # the calls that are not cached
        if method not in _SHARD_CALLS:
            raise AttributeError(method)
        return lambda *args: self._ask("call", method, *args)

    def token_total(self) -> int:
        return self._tokens

    @property
    def chunk_refs(self) -> list[int]:
        return self._ask("all_chunk_ids")

    def chunk_refs_of(self, ids):
        ids = list(ids)
        found = {i: r for i in ids if (r := self._refs.get(i)) is not None}
        missing = [i for i in ids if i not in found]
        if missing:
            for ref in self._ask("call", "chunk_refs_of", missing):
                self._refs.put(ref.id, ref)
                found[ref.id] = ref
        return [found[i] for i in ids]

    def _per_document(self, kind: str, doc_ids) -> dict:
        ids = list(dict.fromkeys(doc_ids))
        out = {d: v for d in ids if (v := self._docs.get((kind, d))) is not None}
        missing = [d for d in ids if d not in out]
        if missing:
            fetched = self._ask("call", "texts" if kind == "text" else "metadata", missing)
            for d, v in fetched.items():
                self._docs.put((kind, d), v)
                out[d] = v
        return out

    def texts(self, doc_ids):
        return self._per_document("text", doc_ids)

    def metadata(self, doc_ids):
        return self._per_document("meta", doc_ids)

    def sentences(self, doc_id: str, first: int, last: int):
        key = (doc_id, first, last)
        found = self._sentences.get(key)
        if found is None:
            found = self._ask("call", "sentences", doc_id, first, last)
            self._sentences.put(key, found)
        return found

    def document_frequency(self, terms):
        terms = [t.lower() for t in terms]
        out = {t: n for t in terms if (n := self._terms.get(t)) is not None}
        missing = [t for t in terms if t not in out]
        if missing:
            for t, n in self._ask("call", "document_frequency", missing).items():
                self._terms.put(t, n)
                out[t] = n
        return out

    def _search(self, kind: str, *args):
        hits, refs = self._ask("search", kind, *args)
        for ref in refs:
            self._refs.put(ref.id, ref)
        return hits

    def search_dense(self, query_vector, k, doc_ids=None):
        return self._search("dense", query_vector, k, doc_ids)

    def search_lexical(self, query, k, doc_ids=None):
        return self._search("lexical", query, k, doc_ids)

    def close(self) -> None:
        pass


class _RemoteVectors:
    def __init__(self, shard: RemoteShard, d: int, ntotal: int):
        from indexing.cache import LRUCache

        self._shard, self.d, self.ntotal = shard, d, ntotal
        self._cache: LRUCache = LRUCache(REF_CACHE)

    def reconstruct(self, cid: int):
        vector = self._cache.get(int(cid))
        if vector is None:
            vector = self._shard._ask("reconstruct", int(cid))
            self._cache.put(int(cid), vector)
        return vector


def _open_remote_shard(index_dir, name: str, generation: str) -> RemoteShard:
    from ray import serve

    return RemoteShard(serve.get_deployment_handle(f"searcher-{name}", app_name=APP_NAME),
                       generation)


def application(settings: Settings, replicas: int):
    """The Serve application: a gateway in front of `replicas` copies of the API, and for
    a sharded index one searcher per shard, which the replicas ask instead of opening
    the shards themselves."""
    from pathlib import Path

    from ray import serve

    from indexing.shards import is_sharded, read_shard_set

    env = _environment(settings)
    searchers = []
    # ARTICLE_QA_SHARD_SEARCHERS=local: replicas open the shards themselves (faster on a
    # small index; docs/SCALING.md), at the cost of holding every shard in each replica.
    if is_sharded(Path(settings.index)) and \
            os.environ.get("ARTICLE_QA_SHARD_SEARCHERS", "ray") != "local":
        env["ARTICLE_QA_SHARD_SEARCHERS"] = "ray"
        index_dir = os.path.abspath(settings.index)
        for name, _ in read_shard_set(Path(settings.index)).shards:
            searchers.append(serve.deployment(
                ShardSearcher, name=f"searcher-{name}", num_replicas=1,
                max_ongoing_requests=MAX_ONGOING_REQUESTS * replicas * 4,
                ray_actor_options={"num_cpus": 0}).bind(index_dir, name))
    api = serve.deployment(API, name="api", num_replicas=replicas,
                           max_ongoing_requests=MAX_ONGOING_REQUESTS,
                           ray_actor_options={
                               "num_cpus": REPLICA_CPUS, "runtime_env": {"env_vars": env}})
    gateway = serve.deployment(serve.ingress(gateway_app)(_GatewayReplica), name="gateway",
                               num_replicas=1,
                               max_ongoing_requests=MAX_ONGOING_REQUESTS * replicas * 4,
                               ray_actor_options={"num_cpus": GATEWAY_CPUS})
    return gateway.bind(api.bind(), *searchers)


class _GatewayReplica:
    """The gateway deployment: Serve runs `Gateway()` as its ASGI app; taking the `api`
    and searcher deployments here makes them part of the application."""

    def __init__(self, api, *searchers):
        self.api = api
        self.searchers = searchers


def serve_on_ray(settings: Settings, address: str, replicas: int, echo=print) -> None:
    """Deploy the API on the cluster at `address` and block until SIGINT/SIGTERM, then
    take the application down (the cluster itself keeps running)."""
    ray = connect(address)
    from ray import serve
    from ray.serve.config import HTTPOptions, ProxyLocation

    cpus = ray.cluster_resources().get("CPU", 0)
    need = replicas * REPLICA_CPUS + GATEWAY_CPUS
    if cpus < need:
        raise ClusterError(f"the Ray cluster at {address} has {cpus:g} CPUs; {replicas} "
                           f"replicas need {need:g} (add nodes or ask for fewer --replicas)")
    serve.start(http_options=HTTPOptions(host=settings.host, port=settings.port),
                proxy_location=ProxyLocation.HeadOnly)
    try:
        serve.run(application(settings, replicas), name=APP_NAME, route_prefix="/",
                  blocking=False)
        echo(f"serving on Ray at {address}: {replicas} replicas behind "
             f"http://{settings.host}:{settings.port}")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
    finally:
        serve.delete(APP_NAME)
        serve.shutdown()
