"""A bounded soak against a real `article-qa serve` process.

Concurrent readers call /ask, /search and /chat while one writer adds, replaces and
deletes documents. Every response is checked as it arrives:

* no error status, no failed connection;
* every citation and passage reproduces its text from the document *at that moment*
  (GET /documents/{id}: text[start:end] == span, text[quote_start:quote_end] == quote,
  passage text likewise). A document the writer deleted or replaced in between is
  counted as such (it matched a version the writer wrote), not as an error;

and at the end: the server lists exactly the writer's live documents plus the corpus,
none twice; the server's RSS grew less than 10% from the end of the warm-up.

    python bench/soak.py                 # 60 s (make soak)
    python bench/soak.py --seconds 600 --readers 6 --json bench/out/soak.json

Exit status 0 when everything held, 1 otherwise. The server runs with its rate limit
off (ARTICLE_QA_RATE_LIMIT=0, the default, set explicitly): all the load comes from one
client address, and the soak measures the service, not the limiter (`--rate-limit` to
keep one).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import free_port  # noqa: E402

CORPUS = ROOT / "data" / "articles"
QUESTIONS = [
    "How many North Korean troops were sent to Russia?",
    "Who did Sergei Shoigu meet in Pyongyang?",
    "When did Shoigu arrive in North Korea?",
    "Which region did North Korea deploy troops to?",
    "What treaty did Russia and North Korea sign?",
    "How many apples did the valley cooperative harvest?",  # the writer's documents
    "Which cooperative reported the largest harvest?",
    "What is the boiling point of mercury?",  # abstains
]
SEARCHES = ["Kursk", "troops deployed", "Shoigu Pyongyang visit", "apples harvest cooperative",
            "treaty", "\"quoted\" AND (operators) OR NEAR*"]
FOLLOW_UPS = [("Who did Sergei Shoigu meet?", "when did he arrive?"),
              ("How many apples did the valley cooperative harvest?", "and in which year?")]
MAX_ERRORS_KEPT = 50
RSS_LIMIT = 0.10


@dataclass
class Soak:
    """Everything the threads record; one lock guards it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: Counter = field(default_factory=Counter)
    latencies: dict = field(default_factory=lambda: defaultdict(list))
    errors: list = field(default_factory=list)
    error_count: int = 0
    checks: Counter = field(default_factory=Counter)
    writes: Counter = field(default_factory=Counter)
    history: dict = field(default_factory=lambda: defaultdict(list))  # doc_id -> texts written
    live: dict = field(default_factory=dict)  # doc_id -> text, the writer's view

    def error(self, what: str) -> None:
        with self.lock:
            self.error_count += 1
            if len(self.errors) < MAX_ERRORS_KEPT:
                self.errors.append(what[:500])

    def count(self, route: str, seconds: float) -> None:
        with self.lock:
            self.requests[route] += 1
            self.latencies[route].append(seconds)

    def check(self, outcome: str, n: int = 1) -> None:
        with self.lock:
            self.checks[outcome] += n


class Client:
    """Plain HTTP with the standard library; one per thread."""

    def __init__(self, url: str):
        self.url = url

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 120
             ) -> tuple[int, bytes, str]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return r.status, r.read(), r.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("content-type", "")


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# -- checking answers against the documents ----------------------------------------------------
def _version_matches(texts: list[str], start: int, end: int, expected: str) -> bool:
    return any(t[start:end] == expected for t in texts)


def check_spans(soak: Soak, client: Client, spans: list[tuple[str, int, int, str]], where: str
                ) -> None:
    """Each (doc_id, start, end, text) must reproduce from the document now, or from a
    version the writer wrote (replaced or deleted in between)."""
    fetched: dict[str, str | None] = {}
    for doc_id, start, end, expected in spans:
        if doc_id not in fetched:
            status, body, _ = client.call("GET", f"/documents/{doc_id}")
            soak.count("GET /documents/{id}", 0.0)
            if status == 200:
                fetched[doc_id] = json.loads(body)["text"]
            elif status == 404:
                fetched[doc_id] = None
            else:
                soak.error(f"{where}: GET /documents/{doc_id} answered {status}")
                continue
        text = fetched[doc_id]
        with soak.lock:
            written = list(soak.history.get(doc_id, ()))
        if text is not None and text[start:end] == expected:
            soak.check("exact")
        elif written and _version_matches(written, start, end, expected):
            soak.check("deleted in between" if text is None else "replaced in between")
        else:
            soak.error(f"{where}: {doc_id}[{start}:{end}] does not reproduce {expected[:60]!r}")


def spans_of_answer(body: dict) -> list[tuple[str, int, int, str]]:
    spans = []
    for a in body["answers"]:
        if a["text"] != a["citations"][0]["span"]:
            spans.append(("<answer>", 0, 0, "answer text is not its first citation's span"))
        for c in a["citations"]:
            if not c["quote_start"] <= c["start"] < c["end"] <= c["quote_end"]:
                spans.append(("<citation>", 0, 0, f"offsets out of order {c}"))
            spans.append((c["doc_id"], c["start"], c["end"], c["span"]))
            spans.append((c["doc_id"], c["quote_start"], c["quote_end"], c["quote"]))
    spans += [(p["doc_id"], p["start"], p["end"], p["text"]) for p in body["passages"]]
    return spans


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in raw.decode().splitlines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            events.append((name, json.loads(line[6:])))
    return events


# -- the threads -------------------------------------------------------------------------------
def reader(soak: Soak, url: str, deadline: float, seed: int) -> None:
    rng = random.Random(seed)
    client = Client(url)
    routes = ["/ask", "/search", "/chat"]
    i = seed
    while time.monotonic() < deadline:
        route = routes[i % len(routes)]
        i += 1
        started = time.monotonic()
        try:
            if route == "/ask":
                status, body, _ = client.call("POST", "/ask", {
                    "question": rng.choice(QUESTIONS), "top_k": rng.choice([3, 5, 8])})
            elif route == "/search":
                q = rng.choice(SEARCHES)
                status, body, _ = client.call("GET", f"/search?q={urllib.request.quote(q)}&k=5")
            else:
                first, second = rng.choice(FOLLOW_UPS)
                stream = rng.random() < 0.5
                status, body, _ = client.call("POST", "/chat", {"stream": stream, "messages": [
                    {"role": "user", "content": first},
                    {"role": "assistant", "content": "(an earlier reply)"},
                    {"role": "user", "content": second}]})
                route = "/chat (stream)" if stream else "/chat"
        except OSError as exc:
            soak.error(f"{route}: {exc!r}")
            continue
        soak.count(route, time.monotonic() - started)
        if status != 200:
            soak.error(f"{route}: status {status}: {body[:200]!r}")
            continue
        if route == "/search":
            data = json.loads(body)
            check_spans(soak, client, [(p["doc_id"], p["start"], p["end"], p["text"])
                                       for p in data["passages"]], route)
        elif route == "/chat (stream)":
            events = sse_events(body)
            names = [n for n, _ in events]
            if names != ["passages", "answer", "done"]:
                soak.error(f"{route}: events {names}")
                continue
            check_spans(soak, client, spans_of_answer(events[1][1]["answer"]), route)
        else:
            data = json.loads(body)
            check_spans(soak, client, spans_of_answer(data["answer"] if route == "/chat"
                                                      else data), route)


def writer(soak: Soak, url: str, deadline: float, seed: int, keep: int) -> None:
    """Add new documents, replace some, delete the oldest; its view is `soak.live`."""
    rng = random.Random(seed)
    client = Client(url)
    seq = 0
    while time.monotonic() < deadline:
        with soak.lock:
            live = list(soak.live)
        op = "add" if len(live) < 2 else rng.choices(["add", "replace", "delete"],
                                                     [0.4, 0.2, 0.4 if len(live) < keep else 0.7])[0]
        if op == "add":
            doc_id = f"soak-{seed}-{seq:05d}"
            seq += 1
        else:
            doc_id = live[0] if op == "delete" else rng.choice(live)
        text = (f"The valley cooperative {doc_id} harvested {rng.randint(1, 99)},"
                f"{rng.randint(100, 999)} apples in {rng.randint(1990, 2025)}. "
                f"Its members credited the rain and {rng.choice(['new', 'old'])} orchards.")
        if op != "delete":
            # Recorded before the request: a reader may cite it before the response arrives.
            with soak.lock:
                soak.history[doc_id].append(text)
        started = time.monotonic()
        try:
            if op == "delete":
                status, body, _ = client.call("DELETE", f"/documents/{doc_id}")
                expected = 204
            else:
                suffix = "?replace=true" if op == "replace" else ""
                status, body, _ = client.call("POST", f"/documents{suffix}",
                                              {"doc_id": doc_id, "text": text,
                                               "source": "soak.example"})
                expected = 201
        except OSError as exc:
            soak.error(f"writer {op}: {exc!r}")
            continue
        soak.count("POST /documents" if op != "delete" else "DELETE /documents/{id}",
                   time.monotonic() - started)
        if status != expected:
            soak.error(f"writer {op} {doc_id}: status {status}: {body[:200]!r}")
            continue
        with soak.lock:
            soak.writes[op] += 1
            if op == "delete":
                soak.live.pop(doc_id, None)
            else:
                soak.live[doc_id] = text


def monitor(pid: int, samples: list, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        try:
            samples.append((time.monotonic(), rss_bytes(pid)))
        except (OSError, RuntimeError):
            return


# -- the run -----------------------------------------------------------------------------------
def start_server(index: Path, rate_limit: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "ARTICLE_QA_RATE_LIMIT": rate_limit}
    env.pop("ARTICLE_QA_API_KEY", None)
    env.pop("ARTICLE_QA_READ_API_KEY", None)
    with open(index.parent / "server.log", "wb") as log:  # the server keeps its own handle
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--index",
                                 str(index), "--corpus", str(CORPUS), "--port", str(port)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("the server did not start:\n" +
                                 (index.parent / "server.log").read_text()[-3000:]) from None
            time.sleep(0.5)


def final_state(soak: Soak, url: str, corpus_ids: set[str]) -> list[str]:
    """What went wrong with the document set at the end (empty: nothing)."""
    client = Client(url)
    status, body, _ = client.call("GET", "/documents")
    ids = [d["doc_id"] for d in json.loads(body)["documents"]]
    problems = []
    duplicated = [d for d, n in Counter(ids).items() if n > 1]
    if duplicated:
        problems.append(f"listed twice: {duplicated[:10]}")
    soak_ids = {d for d in ids if d.startswith("soak-")}
    if soak_ids - set(soak.live):
        problems.append(f"on the server, deleted by the writer: {sorted(soak_ids - set(soak.live))[:10]}")
    if set(soak.live) - soak_ids:
        problems.append(f"lost: {sorted(set(soak.live) - soak_ids)[:10]}")
    if not corpus_ids <= set(ids):
        problems.append(f"corpus documents missing: {sorted(corpus_ids - set(ids))[:10]}")
    for doc_id, text in soak.live.items():
        status, body, _ = client.call("GET", f"/documents/{doc_id}")
        if status != 200 or json.loads(body)["text"] != text:
            problems.append(f"{doc_id}: not the text last written (status {status})")
    health = json.loads(client.call("GET", "/health")[1])
    if health["documents"] != len(ids):
        problems.append(f"/health counts {health['documents']} documents, /documents lists {len(ids)}")
    return problems


def run(seconds: float, readers: int, keep: int, warmup: float, rate_limit: str,
        index: Path | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="article-qa-soak-"))
    try:
        target = work / "index"
        if index is not None:
            shutil.copytree(index, target)  # never write to the caller's index
        proc, url = start_server(target, rate_limit)
        try:
            return _soak(proc, url, seconds, readers, keep, warmup)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _soak(proc, url: str, seconds: float, readers: int, keep: int, warmup: float) -> dict:
    client = Client(url)
    corpus_ids = {d["doc_id"] for d in json.loads(client.call("GET", "/documents")[1])["documents"]}
    soak = Soak()
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    started = time.monotonic()
    deadline = started + seconds
    threads = [threading.Thread(target=reader, args=(soak, url, deadline, i), daemon=True)
               for i in range(readers)]
    threads.append(threading.Thread(target=writer, args=(soak, url, deadline, 1000, keep),
                                    daemon=True))
    watcher = threading.Thread(target=monitor, args=(proc.pid, samples, stop), daemon=True)
    rss_before_load = rss_bytes(proc.pid)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 600)
    elapsed = time.monotonic() - started
    stop.set()
    watcher.join()
    problems = final_state(soak, url, corpus_ids)
    rss_end = rss_bytes(proc.pid)
    # RSS once the warm-up is over: caches, allocator arenas and lazily loaded parts of the
    # models settle in the first seconds of load.
    after_warmup = [r for t, r in samples if t >= started + warmup] or [rss_end]
    rss_start = after_warmup[0]
    growth = (rss_end - rss_start) / rss_start
    latencies = {route: {"p50_ms": round(statistics.median(v) * 1000, 1),
                         "p95_ms": round(sorted(v)[int(0.95 * (len(v) - 1))] * 1000, 1)}
                 for route, v in soak.latencies.items() if v and max(v) > 0}
    return {
        "seconds": round(elapsed, 1), "readers": readers, "writers": 1,
        "requests": dict(sorted(soak.requests.items())),
        "requests_total": sum(soak.requests.values()),
        "latency": latencies,
        "writes": dict(soak.writes), "live_soak_documents_at_end": len(soak.live),
        "citation_checks": dict(soak.checks),
        "errors": soak.error_count, "error_examples": soak.errors,
        "final_state_problems": problems,
        "rss_mb": {"before_load": round(rss_before_load / 2**20, 1),
                   "start_after_warmup": round(rss_start / 2**20, 1),
                   "end": round(rss_end / 2**20, 1),
                   "peak": round(max([r for _, r in samples] + [rss_end]) / 2**20, 1),
                   "warmup_s": warmup},
        "rss_growth": round(growth, 4),
        # Every 10th one-second sample: whether the growth levels off or keeps climbing.
        "rss_timeline_mb": [(round(t - started), round(r / 2**20)) for t, r in samples[::10]],
        "ok": soak.error_count == 0 and not problems and growth < RSS_LIMIT,
    }


def markdown(r: dict) -> str:
    rows = "\n".join(f"| {route} | {n:,} | {r['latency'].get(route, {}).get('p50_ms', '')} | "
                     f"{r['latency'].get(route, {}).get('p95_ms', '')} |"
                     for route, n in r["requests"].items())
    rss = r["rss_mb"]
    return (f"soak: {r['seconds']} s, {r['readers']} readers + 1 writer, "
            f"{r['requests_total']:,} requests, {r['errors']} errors\n\n"
            f"| route | requests | p50 ms | p95 ms |\n|---|---:|---:|---:|\n{rows}\n\n"
            f"writes: {r['writes']} ({r['live_soak_documents_at_end']} soak documents live at "
            f"the end)\ncitation/passage checks: {r['citation_checks']}\n"
            f"final state: {'consistent' if not r['final_state_problems'] else r['final_state_problems']}\n"
            f"server RSS: {rss['start_after_warmup']} MB after {rss['warmup_s']:g} s warm-up -> "
            f"{rss['end']} MB at the end ({r['rss_growth']:+.1%}; peak {rss['peak']} MB; "
            f"{rss['before_load']} MB before any load)\n"
            f"RSS every 10 s (s, MB): {r['rss_timeline_mb']}\n"
            f"{'OK' if r['ok'] else 'FAILED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="load duration [60]")
    parser.add_argument("--readers", type=int, default=4, help="reader threads [4]")
    parser.add_argument("--keep", type=int, default=12,
                        help="soak documents the writer keeps alive at most, roughly [12]")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of load before the RSS baseline [10, or 1/6 of a short run]")
    parser.add_argument("--rate-limit", default="0", help="ARTICLE_QA_RATE_LIMIT for the server [0]")
    parser.add_argument("--index", type=Path, default=None,
                        help="serve a copy of this index [default: build data/articles]")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else min(10.0, args.seconds / 6)
    result = run(args.seconds, args.readers, args.keep, warmup, args.rate_limit, args.index)
    print(markdown(result))
    if result["error_examples"]:
        print("\nfirst errors:\n  " + "\n  ".join(result["error_examples"][:10]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
