"""Faults with real processes: kill -9 during writes, a crash at every step of a commit,
damaged index files at start-up, a full disk during a write, and SIGTERM with a request in
flight. After each, the index opens, passes `serve`'s start-up check and answers, with
either the old or the new content, never a mix.

(`kill -9` during `index build` and the CLI-level corruption messages are in test_store.py.)
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from litestar.testing import TestClient

from indexing.store import Index, live_generation
from service.app import create_app
from service.cli import _verify_index
from service.qa import QAPipeline
from service.settings import Settings
from tests.conftest import ROOT, free_port
from tests.test_store import _break

pytestmark = pytest.mark.slow

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "ARTICLE_QA_RATE_LIMIT": "0", "PYTHONUNBUFFERED": "1"}
ENV.pop("ARTICLE_QA_API_KEY", None)
CLI = [sys.executable, "-m", "service.cli"]


def _contents(index_dir: Path) -> dict[str, str]:
    index = Index.open(index_dir)
    try:
        return {d.doc_id: index.document(d.doc_id).text for d in index.list_documents()}
    finally:
        index.close()


def _assert_old_or_new(index_dir: Path, old: dict[str, str], new: dict[str, str]) -> str:
    """The index passes serve's start-up check and holds exactly `old` or exactly `new`."""
    _verify_index(index_dir)  # opens; quick_check; every document matches its hash; vectors
    found = _contents(index_dir)
    assert found in (old, new), sorted(set(found) ^ set(old))
    index = Index.open(index_dir)
    try:
        assert index.search_lexical("troops", 3), "the index does not answer"
    finally:
        index.close()
    return "old" if found == old else "new"


def _wait_for(predicate, timeout: float, what: str, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the process ended first (exit {proc.returncode})")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def _writing(index_dir: Path) -> bool:
    return bool(list(index_dir.glob(".tmp-*")))


def _articles(n: int, prefix: str, sentences: int = 40) -> list[dict]:
    body = " ".join(f"Sentence {i} says the valley harvested {i * 7} apples after the rain."
                    for i in range(sentences))
    return [{"doc_id": f"{prefix}{i:03d}", "title": f"Harvest {i}", "text": f"{body} Report {i}."}
            for i in range(n)]


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(30)


# -- kill -9 during `index add` ----------------------------------------------------------------
def test_kill_9_during_index_add_leaves_old_or_new_index(index_copy, tmp_path):
    old = _contents(index_copy)
    articles = _articles(120, "add")
    corpus = tmp_path / "new.jsonl"
    corpus.write_text("\n".join(json.dumps(a) for a in articles), encoding="utf-8")
    new = {**old, **{a["doc_id"]: a["text"] for a in articles}}
    proc = subprocess.Popen([*CLI, "index", "add", "--index", str(index_copy), str(corpus)],
                            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _writing(index_copy), 120, "index add started writing", proc)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
    finally:
        _kill(proc)
    assert proc.returncode == -signal.SIGKILL
    assert _assert_old_or_new(index_copy, old, new) == "old"


# -- a crash at every file-system step of a commit ---------------------------------------------
CRASHING_REMOVE = r"""
import os, shutil, sys
from pathlib import Path

index_dir, doc_id, crash_at = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
steps = 0


def crashing(fn):
    def step(*args, **kwargs):
        global steps
        steps += 1
        if steps == crash_at:
            os._exit(137)  # as abrupt as kill -9: no finally, no cleanup, no flush
        return fn(*args, **kwargs)
    return step


import faiss
from indexing.pipeline import remove_documents

for module, name in [(os, "mkdir"), (os, "rename"), (os, "replace"), (os, "fsync"),
                     (os, "unlink"), (shutil, "rmtree"), (faiss, "write_index")]:
    setattr(module, name, crashing(getattr(module, name)))
remove_documents(index_dir, [doc_id])
print(steps)
"""


def test_crash_at_every_commit_step_leaves_old_or_new_index(built_index, tmp_path):
    """`remove` needs no model, so each crash point is a fresh process in a fraction of a
    second; the commit it runs is the one every write (add, build, POST, DELETE) uses."""
    old = _contents(built_index)
    victim = sorted(old)[0]
    new = {k: v for k, v in old.items() if k != victim}
    outcomes = []
    for crash_at in range(1, 40):
        index_dir = tmp_path / f"crash-{crash_at}"
        shutil.copytree(built_index, index_dir)
        run = subprocess.run([sys.executable, "-c", CRASHING_REMOVE, str(index_dir), victim,
                              str(crash_at)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                             timeout=120)
        if run.returncode == 0:  # fewer steps than crash_at: the write completed
            assert int(run.stdout.split()[-1]) < crash_at
            assert _assert_old_or_new(index_dir, old, new) == "new"
            break
        assert run.returncode == 137, run.stderr[-2000:]
        outcomes.append(_assert_old_or_new(index_dir, old, new))
        # The next write cleans up after the crashed one and succeeds.
        from indexing.pipeline import remove_documents

        other = sorted(_contents(index_dir))[-1]
        remove_documents(index_dir, [other])
        assert not _writing(index_dir) and other not in _contents(index_dir)
        shutil.rmtree(index_dir)
    else:
        pytest.fail("the write never completed")
    assert len(outcomes) >= 5 and {"old", "new"} <= set(outcomes), outcomes
    print(f"crash points: {len(outcomes)}, outcomes: {outcomes}")


# -- a damaged index at start-up ---------------------------------------------------------------
def _flip(path: Path, at: int, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    for i in range(at, min(at + n, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _offset_in_table(store: Path, table: str, needle: bytes) -> int:
    """Where `needle` first occurs in the pages of `table` (the store keeps copies of the
    text in other tables too: the full-text index, the sentence annotations)."""
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = [r[0] for r in conn.execute("SELECT pageno FROM dbstat WHERE name = ?", (table,))]
    finally:
        conn.close()
    data = store.read_bytes()
    for page in sorted(pages):
        at = data.find(needle, (page - 1) * size, page * size)
        if at >= 0:
            return at
    raise AssertionError(f"{needle!r} is in no page of {table}")


DAMAGE = ["truncated-faiss", "missing-faiss", "flipped-vectors", "truncated-store",
          "garbage-store", "flipped-document-text", "garbage-manifest", "current"]


def _damage(index_dir: Path, how: str) -> None:
    gen = live_generation(index_dir)
    store, vectors = gen / "store.sqlite", gen / "vectors.faiss"
    if how in ("truncated-faiss", "garbage-store", "garbage-manifest", "current"):
        _break(index_dir, how)  # the shapes test_store.py checks at the Index.open level
    elif how == "truncated-store":
        store.write_bytes(store.read_bytes()[: store.stat().st_size // 2])
    elif how == "flipped-vectors":
        _flip(vectors, vectors.stat().st_size // 2)
    elif how == "flipped-document-text":
        _flip(store, _offset_in_table(store, "documents", b"Shoigu"), 6)
    elif how == "missing-faiss":
        vectors.unlink()


def test_damaged_index_fails_serve_start_with_one_clear_line(built_index, tmp_path):
    """Each damage in its own index and `article-qa serve` process, all started at once."""
    procs = {}
    for how in DAMAGE:
        index_dir = tmp_path / how
        shutil.copytree(built_index, index_dir)
        _damage(index_dir, how)
        procs[how] = (index_dir, subprocess.Popen(
            [*CLI, "serve", "--index", str(index_dir), "--port", str(free_port())], cwd=ROOT,
            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    failures = []
    for how, (index_dir, proc) in procs.items():
        try:
            out, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            _kill(proc)
            failures.append(f"{how}: serve started instead of failing")
            continue
        error = [line for line in out.splitlines() if line.startswith("error: ")]
        if proc.returncode != 1 or "Traceback" in out or len(error) != 1 \
                or str(index_dir) not in error[0] or "--rebuild" not in error[0]:
            failures.append(f"{how}: exit {proc.returncode}\n{out[-1500:]}")
    assert not failures, "\n".join(failures)


# -- a full disk --------------------------------------------------------------------------------
FULL_DISK = r"""
set -u
mount -t tmpfs -o size=${SIZE}k tmpfs "$MNT" || exit 97
cp -a "$SRC" "$MNT/index" || exit 98
# Leave exactly FREE kilobytes: the write's copy of the index cannot fit.
avail=$(df -k "$MNT" | awk 'NR==2 {print $4}')
fallocate -l $(( (avail - FREE) * 1024 )) "$MNT/filler" 2>/dev/null \
  || dd if=/dev/zero of="$MNT/filler" bs=1024 count=$(( avail - FREE )) status=none
$PY -m service.cli index remove --index "$MNT/index" "$DOC"; echo "first=$?"
$PY -c "$CHECK" "$MNT/index"
rm "$MNT/filler"  # free the space: the same write now succeeds
$PY -m service.cli index remove --index "$MNT/index" "$DOC"; echo "second=$?"
$PY -c "$CHECK" "$MNT/index"
"""
CHECK = r"""
import json, sys
from pathlib import Path
from service.cli import _verify_index
from indexing.store import Index
d = Path(sys.argv[1])
_verify_index(d)
ix = Index.open(d)
print("STATE " + json.dumps({"documents": sorted(x.doc_id for x in ix.list_documents()),
                             "leftovers": sorted(p.name for p in d.glob(".tmp-*"))}))
"""


@pytest.mark.parametrize("fails_in", ["store copy", "vectors write"])
def test_full_disk_during_a_write_keeps_the_old_index(built_index, fails_in):
    """A real full file system: a tmpfs of a few hundred KB in a private mount namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is absent; test_full_disk_during_post is the injected version")
    old = sorted(_contents(built_index))
    gen = live_generation(built_index)
    store_kb = (gen / "store.sqlite").stat().st_size // 1024
    vectors_kb = (gen / "vectors.faiss").stat().st_size // 1024
    free = store_kb // 3 if fails_in == "store copy" else store_kb + vectors_kb // 3
    env = {**ENV, "SIZE": str(4 * (store_kb + vectors_kb) + 512), "FREE": str(free),
           "SRC": str(built_index), "DOC": old[0], "PY": sys.executable, "CHECK": CHECK}
    mnt = Path(os.environ.get("TMPDIR", "/tmp")) / f"aqa-full-{os.getpid()}"
    mnt.mkdir(exist_ok=True)
    try:
        env["MNT"] = str(mnt)
        run = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                              FULL_DISK], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=180)
    finally:
        mnt.rmdir()
    if run.returncode in (97, 98) or "unshare:" in run.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()[:200]}")
    out = run.stdout + run.stderr
    states = [json.loads(line[6:]) for line in run.stdout.splitlines()
              if line.startswith("STATE ")]
    assert "first=1" in out and "second=0" in out, out[-3000:]
    assert "No space left on device" in out or "disk is full" in out, out[-3000:]
    assert "Traceback" not in out
    assert states[0]["documents"] == old  # the failed write changed nothing
    assert states[1] == {"documents": old[1:], "leftovers": []}


@pytest.fixture()
def client(indexer, index_copy):
    pipeline = QAPipeline(Settings(index=index_copy), indexer=indexer)
    app = create_app(Settings(index=index_copy, rate_limit="0"), pipeline=pipeline)
    with TestClient(app=app, timeout=60) as c:
        yield c


def _enospc(*_, **__):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _faiss_enospc(*_, **__):
    raise RuntimeError("Error in void faiss::write_index: write error in /x/vectors.faiss: "
                       "20398 != 24576 (No space left on device)")


def _sqlite_full(*_, **__):
    raise sqlite3.OperationalError("database or disk is full")


@pytest.mark.parametrize(("target", "fault"), [
    ("os.fsync", _enospc), ("faiss.write_index", _faiss_enospc),
    ("indexing.store.IndexWriter.commit", _sqlite_full)])
def test_full_disk_during_post_and_delete_is_507_and_changes_nothing(client, monkeypatch,
                                                                     target, fault):
    """The same failure, injected, through the HTTP write routes."""
    index = client.app.state.qa.settings.index
    before, generation = _contents(index), (index / "CURRENT").read_text()
    doc = {"doc_id": "full-1", "text": "The orchard produced 4,500 apples in its best season."}
    victim = sorted(before)[0]
    with monkeypatch.context() as m:
        m.setattr(target, fault)
        r = client.post("/documents", json=doc)
        assert r.status_code == 507 and "full" in r.json()["detail"], r.text
        assert "/x/" not in r.text
        r = client.delete(f"/documents/{victim}")
        assert r.status_code == 507, r.text
    assert (index / "CURRENT").read_text() == generation and _contents(index) == before
    assert client.get("/documents/full-1").status_code == 404
    assert client.get(f"/documents/{victim}").status_code == 200
    assert not _writing(index)
    # With space again, the same write succeeds.
    assert client.post("/documents", json=doc).status_code == 201


# -- a real server: SIGTERM with a request in flight, kill -9 during POST /documents -------------
def _serve(index_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "--index", str(index_dir), "--port", str(port)],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return urllib.request.urlopen(url + "/health", timeout=2).status == 200
        except OSError:
            return False

    try:
        _wait_for(up, 180, "server start", proc)
    except BaseException:
        _kill(proc)
        raise
    return proc, url


def _post_in_background(url: str, doc: dict) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def post():
        request = urllib.request.Request(url + "/documents", data=json.dumps(doc).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=300) as r:
                result["status"], result["body"] = r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            result["status"], result["body"] = exc.code, exc.read().decode()
        except OSError as exc:
            result["error"] = repr(exc)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread, result


def test_server_kill_9_during_post_then_restart_then_sigterm_with_post_in_flight(index_copy):
    """kill -9 the server during POST /documents: the index holds the old or the new
    content. A new server starts from it; SIGTERM while it indexes another POST: the
    request finishes (201) and the server exits cleanly."""
    old = _contents(index_copy)
    killed, finished = _articles(2, "server", sentences=150)
    started = time.monotonic()
    proc, url = _serve(index_copy)
    print(f"server up in {time.monotonic() - started:.1f} s")
    try:
        thread, result = _post_in_background(url, killed)
        _wait_for(lambda: _writing(index_copy), 60, "POST /documents started writing", proc)
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        thread.join(60)
        assert "status" not in result, result  # the client saw the connection drop
    finally:
        _kill(proc)
    outcome = _assert_old_or_new(index_copy, old, {**old, killed["doc_id"]: killed["text"]})
    current = _contents(index_copy)

    proc, url = _serve(index_copy)
    try:
        with urllib.request.urlopen(urllib.request.Request(
                url + "/ask", data=b'{"question": "How many troops were sent to Russia?"}',
                headers={"Content-Type": "application/json"}), timeout=120) as r:
            assert json.loads(r.read())["answer"] is not None
        thread, result = _post_in_background(url, finished)
        _wait_for(lambda: _writing(index_copy), 60, "POST /documents started writing", proc)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        thread.join(300)
        print(f"POST finished {time.monotonic() - started:.1f} s after SIGTERM")
        assert result.get("status") == 201, result
        out, _ = proc.communicate(timeout=60)
        # uvicorn re-raises the signal once shut down, so the exit status is SIGTERM's.
        assert proc.returncode in (0, -signal.SIGTERM), out.decode()[-2000:]
        assert b"Finished server process" in out and b"Traceback" not in out
    finally:
        _kill(proc)
    _assert_old_or_new(index_copy, current, {**current, finished["doc_id"]: finished["text"]})
    assert finished["doc_id"] in _contents(index_copy)
    print(f"kill -9 during POST left the {outcome} index")
