"""HTTP benchmarks against a real `article-qa serve` process on 127.0.0.1.

    python bench/http_load.py --index index --runs 5 --seconds 5

* load: for /ask and /search at 1, 8 and 32 concurrent clients, each client a thread
  with one keep-alive connection sending requests back to back for `--seconds`;
  throughput (requests/s) and p50/p99 latency per run, median (min-max) over runs.
  Any non-2xx answer or connection error counts as an error (the target is zero).
  The server runs with rate limiting off (the default; set explicitly so an operator's
  ARTICLE_QA_RATE_LIMIT cannot throttle the one benchmark client) and the
  answer cache off, so every /ask is answered from scratch;
* start-up: seconds from spawning `article-qa serve` on an existing index to its
  first answered /ask;
* memory: the server's resident memory after start-up and after 1,000 questions.

The load generator shares the 2 cores with the server, so these figures are a floor.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Server, fmt, machine, percentile, questions, rss_mb, summary

SERVER_ENV = {"ARTICLE_QA_RATE_LIMIT": "0", "ARTICLE_QA_ANSWER_CACHE": "0"}


def _request(conn: http.client.HTTPConnection, route: str, q: str) -> int:
    if route == "/ask":
        conn.request("POST", "/ask", body=json.dumps({"question": q}),
                     headers={"Content-Type": "application/json"})
    else:
        conn.request("GET", f"/search?q={quote(q)}&k=5")
    resp = conn.getresponse()
    resp.read()
    return resp.status


def load(port: int, route: str, clients: int, seconds: float, qs: list[str]) -> dict:
    """One bounded load run: `clients` threads for `seconds`."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        n = i * (len(qs) // max(clients, 1))
        start.wait()
        while time.perf_counter() < stop_at[0]:
            q = qs[n % len(qs)]
            n += 1
            t = time.perf_counter()
            try:
                ok = 200 <= _request(conn, route, q) < 300
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            latencies[i].append((time.perf_counter() - t) * 1000)
            errors[i] += not ok
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    flat = [x for per in latencies for x in per]
    return {"requests": len(flat), "errors": sum(errors), "rps": len(flat) / wall,
            "p50": percentile(flat, 50), "p99": percentile(flat, 99)}


def run(index: Path, runs: int, seconds: float, concurrency: list[int],
        workers: int = 1) -> dict:
    qs = questions(200)
    out: dict = {"load": [], "startup_s": None, "memory_mb": None}
    startups = []
    for _ in range(runs):
        with Server(index, SERVER_ENV) as server:
            startups.append(server.wait_first_answer(qs[0]))
    out["startup_s"] = summary(startups, 2)
    args = ["--workers", str(workers)] if workers > 1 else []
    with Server(index, SERVER_ENV, args) as server:
        server.wait_first_answer(qs[0])
        for route in ("/ask", "/search"):
            for c in concurrency:
                load(server.port, route, c, 1.0, qs)  # warm-up
                rows = [load(server.port, route, c, seconds, qs) for _ in range(runs)]
                out["load"].append({
                    "route": route, "clients": c,
                    "requests": sum(r["requests"] for r in rows),
                    "errors": sum(r["errors"] for r in rows),
                    "rps": summary([r["rps"] for r in rows]),
                    "p50": summary([r["p50"] for r in rows]),
                    "p99": summary([r["p99"] for r in rows])})
                print(f"{route} x{c}: {out['load'][-1]}", file=sys.stderr, flush=True)
    with Server(index, SERVER_ENV) as server:
        server.wait_first_answer(qs[0])
        after_start = rss_mb(server.proc.pid)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        errors = sum(_request(conn, "/ask", qs[i % len(qs)]) != 200 for i in range(1000))
        out["memory_mb"] = {"after_start": round(after_start), "after_1000": round(
            rss_mb(server.proc.pid)), "errors": errors}
    return out


def markdown(r: dict) -> str:
    lines = ["| route | clients | requests/s | p50 ms | p99 ms | requests | errors |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in r["load"]:
        lines.append(f"| `{row['route']}` | {row['clients']} | {fmt(row['rps'])} | "
                     f"{fmt(row['p50'])} | {fmt(row['p99'])} | {row['requests']:,} | "
                     f"{row['errors']} |")
    m = r["memory_mb"]
    lines += ["", f"Start-up to the first answered `/ask` (existing index): "
                  f"{fmt(r['startup_s'], ' s')}.",
              f"Resident memory: {m['after_start']} MB after start-up, {m['after_1000']} MB "
              f"after 1,000 questions ({m['errors']} errors)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("index"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes for the load runs (`serve --workers`)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = {"machine": machine(),
              "http": run(args.index, args.runs, args.seconds,
                          [int(c) for c in args.clients.split(",")], args.workers)}
    print(markdown(result["http"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
