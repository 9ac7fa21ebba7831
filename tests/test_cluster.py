"""Indexing on a real two-node Ray cluster on 127.0.0.1 (ray.cluster_utils.Cluster).

Ray advertises the machine's external address unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0,
so the fixture sets it for the cluster and every client (never in the product's code).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from indexing.pipeline import build
from indexing.shards import open_index, read_shard_set
from tests.conftest import ARTICLES, ROOT, default_env, free_port
from tests.test_shards import _ranked

ray = pytest.importorskip("ray", reason="the ray extra is not installed (make test installs it)")

LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in LOOPBACK}
    os.environ.update(LOOPBACK)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    pids = [p.process.pid for node in c.list_all_nodes()
            for infos in node.all_processes.values() for p in infos]
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        for pid in pids:  # whatever shutdown left behind, stopped by process id
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def local_sharded(indexer, tmp_path_factory):
    index_dir = tmp_path_factory.mktemp("local") / "index"
    build(ARTICLES, index_dir, indexer, shards=2)
    return index_dir


def _same_index(a, b, embedder) -> None:
    x, y = open_index(a), open_index(b)
    assert x.manifest.documents == y.manifest.documents
    assert _ranked(x, embedder) == _ranked(y, embedder)
    for doc_id in x.manifest.documents:
        sx, sy = x.sentences(doc_id, 0, 10**6), y.sentences(doc_id, 0, 10**6)
        assert [(s.start, s.end, s.annotation, s.vector.tobytes()) for s in sx] == \
            [(s.start, s.end, s.annotation, s.vector.tobytes()) for s in sy]


def test_a_two_node_build_spreads_the_work_and_matches_a_local_build(cluster, indexer,
                                                                     local_sharded, tmp_path):
    from indexing.cluster import RayProcessor

    processor = RayProcessor(cluster.address, batch_documents=1)
    assert processor.actors == 2
    index_dir = tmp_path / "index"
    report = build(ARTICLES, index_dir, indexer, shards=2, processor=processor)
    assert report.indexed == 5 and "cluster" in report.stage_seconds
    assert len(processor.nodes) == 2  # both raylets annotated and embedded
    _same_index(index_dir, local_sharded, indexer.embedder)


def test_the_cli_builds_on_the_cluster(cluster, indexer, local_sharded, tmp_path):
    index_dir = tmp_path / "index"
    run = subprocess.run([sys.executable, "-m", "service.cli", "index", "build", "--corpus",
                          str(ARTICLES), "--index", str(index_dir), "--ray", cluster.address,
                          "--shards", "2"], cwd=ROOT, env=default_env(**LOOPBACK),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "5 documents (5 indexed" in run.stdout and "Ray node(s)" in run.stderr
    _same_index(index_dir, local_sharded, indexer.embedder)


def test_a_worker_killed_mid_build_leaves_an_index_that_opens(cluster, indexer, local_sharded,
                                                              tmp_path):
    """The actor is killed while it works: Ray restarts it and the build completes, or the
    build fails; either way the index opens, old or new, never half-written."""
    from ray.util.state import list_actors

    from indexing.cluster import RayProcessor

    index_dir = tmp_path / "index"
    shutil.copytree(local_sharded, index_dir)
    before = read_shard_set(index_dir)
    processor = RayProcessor(cluster.address, batch_documents=1)
    outcome: dict = {}

    def run():
        try:
            outcome["report"] = build(ARTICLES, index_dir, indexer, rebuild=True,
                                      processor=processor)
        except Exception as exc:  # the outcome is checked below
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and worker.is_alive() and time.monotonic() < deadline:
        for actor in list_actors(filters=[("state", "=", "ALIVE")]):
            if "_Annotator" in actor.class_name and actor.pid:
                os.kill(actor.pid, signal.SIGKILL)
                killed = actor.pid
                break
        time.sleep(0.2)
    worker.join(300)
    assert not worker.is_alive()
    assert killed is not None, "no annotation actor was seen alive"
    print(f"killed actor pid {killed}; the build "
          f"{'failed: ' + str(outcome['error'])[:200] if 'error' in outcome else 'completed'}")
    if "error" in outcome:
        assert read_shard_set(index_dir) == before
    else:
        assert read_shard_set(index_dir) != before
    _same_index(index_dir, local_sharded, indexer.embedder)


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "not-an-address"])
def test_an_unreachable_cluster_fails_fast_with_one_line(address, tmp_path):
    address = address.format(port=free_port())
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "service.cli", "index", "build", "--corpus",
                          str(ARTICLES), "--index", str(tmp_path / "index"), "--ray", address],
                         cwd=ROOT, env=default_env(**LOOPBACK), capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and address in lines[0]
    assert time.monotonic() - started < 30
    assert not (tmp_path / "index").exists()


def test_serve_on_two_replicas_keeps_contracts_and_survives_a_replica_kill(
        cluster, indexer, local_sharded, tmp_path):
    """Two API replicas over the 2-shard index, whose shards are held by searchers."""
    import httpx
    from ray.util.state import list_actors

    from service.qa import QAPipeline
    from service.settings import Settings
    from tests.test_shards import QUESTIONS

    index_dir = tmp_path / "index"
    shutil.copytree(local_sharded, index_dir)
    local = QAPipeline(Settings(index=local_sharded), indexer=indexer)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = default_env(**LOOPBACK, ARTICLE_QA_API_KEY="sekrit")
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--index",
                             str(index_dir), "--ray", cluster.address, "--replicas", "2",
                             "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the Serve application never became healthy"
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        actors = [a.class_name for a in list_actors(filters=[("state", "=", "ALIVE")])]
        assert sum(c.endswith((":searcher-shard-000", ":searcher-shard-001"))
                   for c in actors) == 2
        # The answers one process gives from the same index, and the same error shapes.
        for q in QUESTIONS:
            body = httpx.post(url + "/ask", json={"question": q}, timeout=60).json()
            mine = local.ask(q)
            assert (body["answer"], body["confidence"]) == (mine.answer, mine.confidence), q
        assert body["passages"] == [] or body["answer"] is None or body["answers"]
        docs = httpx.get(url + "/documents", timeout=60).json()["documents"]
        assert len(docs) == 5
        assert httpx.get(url + "/documents/nope", timeout=60).status_code == 404
        bad = httpx.post(url + "/ask", content=b"{bad", timeout=60,
                         headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "detail" in bad.json()
        assert httpx.post(url + "/documents", json={"doc_id": "x", "text": "t"},
                          timeout=60).status_code == 401
        # A write through one replica reaches the searchers and the other replica.
        added = httpx.post(url + "/documents", timeout=60, headers={
            "Authorization": "Bearer sekrit"}, json={
            "doc_id": "garden", "title": "Roses", "text": "The rose garden opened in 1921."})
        assert added.status_code == 201, added.text
        for _ in range(4):
            found = httpx.post(url + "/ask", timeout=60, json={
                "question": "When did the rose garden open?"}).json()
            assert found["answer"] == "1921", found
        assert "<html" in httpx.get(url + "/", timeout=60).text.lower()
        stream = httpx.post(url + "/chat", timeout=60, json={
            "messages": [{"role": "user", "content": "how many troops were reported?"}],
            "stream": True})
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert [ln for ln in stream.text.splitlines() if ln.startswith("event:")] == \
            ["event: passages", "event: answer", "event: done"]
        replicas = [a for a in list_actors(filters=[("state", "=", "ALIVE")])
                    if a.class_name.endswith(":api")]
        assert len(replicas) == 2 and len({a.node_id for a in replicas}) == 2
        # Each replica in turn is killed while four clients ask: the gateway sends what the
        # dead one held to the other, so every request is answered.
        statuses: list = []

        def ask(n: int) -> None:
            with httpx.Client(timeout=120) as client:
                for i in range(n):
                    q = f"Who arrived in North Korea? ({i})"
                    statuses.append(client.post(url + "/ask", json={"question": q}).status_code)

        clients = [threading.Thread(target=ask, args=(25,)) for _ in range(4)]
        for t in clients:
            t.start()
        for replica in replicas:
            time.sleep(1.0)
            os.kill(replica.pid, signal.SIGKILL)
        for t in clients:
            t.join(300)
        assert statuses == [200] * 100
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out = proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out = proc.communicate()[0]
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out


def test_serve_on_an_unreachable_cluster_fails_fast(built_index):
    run = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--index",
                          str(built_index), "--ray", f"127.0.0.1:{free_port()}"], cwd=ROOT,
                         env=default_env(**LOOPBACK), capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and run.stderr.startswith("error: cannot reach a Ray cluster")
