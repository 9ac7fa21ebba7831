"""`make bench`: run every benchmark once, in order, and write bench/RESULTS.md.

    python bench/run_all.py [--runs 5] [--quick]

Each benchmark script runs as its own process (so one's memory and threads don't
colour the next), prints a Markdown section on stdout and writes JSON into
bench/out/; this script collects them, checks the figures against the targets of
issue 6 and writes bench/RESULTS.md. `--quick` shrinks every benchmark (for trying
the suite out; its RESULTS.md says so).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, machine

OUT = ROOT / "bench" / "out"
BBC = ROOT.parent / "shared" / "datasets" / "bbc-news"
PROGRESS = re.compile(r"^\s+[\d,]+ \S+ run \d+:")
TIMEOUT_S = 1800  # one benchmark may not hold up the others forever


def _run(name: str, args: list[str], log) -> tuple[str, dict | None, float]:
    """Run one benchmark script; returns its Markdown, its JSON and its wall seconds."""
    json_path = OUT / f"{name}.json"
    json_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(ROOT / "bench" / f"{name}.py"), *args, "--json", str(json_path)]
    print(f"== {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"**stopped after {TIMEOUT_S} s** (see bench/out/bench.log)\n", None, TIMEOUT_S
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        return (f"**failed** (exit {proc.returncode}; see bench/out/bench.log)\n", None, wall)
    data = json.loads(json_path.read_text()) if json_path.exists() else None
    return _without_progress(proc.stdout).strip() + "\n", data, wall


def _without_progress(text: str) -> str:
    """Drop per-run progress lines ("  100,000 flat run 3: ...") from a script's output."""
    return "\n".join(line for line in text.splitlines()
                     if not PROGRESS.match(line) and not line.startswith("example passage:"))


def _target(name: str, value: float | None, goal: float, higher_is_better: bool,
            unit: str) -> str:
    if value is None:
        return f"| {name} | {'≥' if higher_is_better else '≤'} {goal:g}{unit} | not measured | - |"
    met = value >= goal if higher_is_better else value <= goal
    if met:
        verdict = "met"
    else:
        verdict = f"missed by {abs(value - goal):.3g}{unit} ({value / goal:.2g}x the target)"
    return (f"| {name} | {'≥' if higher_is_better else '≤'} {goal:g}{unit} | {value:g}{unit} | "
            f"{verdict} |")


def targets(results: dict) -> str:
    ask = (results.get("ask") or {}).get("ask", {})
    http = (results.get("http_load") or {}).get("http", {})
    idx = (results.get("index_corpus") or {}).get("index", {})
    scale = (results.get("scale") or {})

    def load(route: str, clients: int) -> dict:
        return next((r for r in http.get("load", []) if r["route"] == route
                     and r["clients"] == clients), {})

    ask8 = load("/ask", 8)
    neural = ((results.get("ask") or {}).get("readers") or {}).get("neural", {})
    errors = sum(r["errors"] for r in http.get("load", [])) if http else None
    rows = [
        "| target | goal | measured (median) | verdict |", "|---|---|---:|---|",
        _target("in-process /ask p50", ask.get("p50", {}).get("median"), 10, False, " ms"),
        _target("in-process /ask p95", ask.get("p95", {}).get("median"), 25, False, " ms"),
        _target("in-process /ask p50, neural reader", neural.get("p50", {}).get("median"), 60,
                False, " ms"),
        _target("read, neural reader (median)", neural.get("read", {}).get("median"), 35,
                False, " ms"),
        _target("HTTP /ask, 8 clients", ask8.get("rps", {}).get("median"), 150, True, " req/s"),
        _target("HTTP errors (all runs)", errors, 0, False, ""),
        _target("start-up to first answer", http.get("startup_s", {}).get("median"), 3, False,
                " s"),
        _target("resident memory after 1,000 questions",
                (http.get("memory_mb") or {}).get("after_1000"), 600, False, " MB"),
        _target("BBC index build", idx.get("documents_per_s", {}).get("median"), 40, True,
                " docs/s"),
    ]
    # The index type `auto` picks at a million passages is the approximate one.
    million = [r for r in (scale or {}).get("results", [])
               if r.get("passages") == 1_000_000 and r.get("type") != "flat"]
    if million:
        r = million[0]
        rows.append(_target(f"1M passages query p50 ({r['type']})",
                            round(r["stats"]["p50_ms"]["median"], 2), 20, False, " ms"))
        rows.append(_target(f"1M passages recall@10 ({r['type']})",
                            round(r["stats"]["recall"]["median"], 3), 0.95, True, ""))
    else:
        rows.append(_target("1M passages query p50", None, 20, False, " ms"))
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--bbc", type=Path, default=BBC)
    parser.add_argument("--index-limit", type=int,
                        help="index only the first N BBC files (default: all)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    runs = 2 if args.quick else args.runs
    index_dir = OUT / "index"
    shutil.rmtree(index_dir, ignore_errors=True)
    env_machine = machine()
    sections: list[tuple[str, str, str]] = []
    results: dict = {}
    with (OUT / "bench.log").open("w") as log:
        subprocess.run([sys.executable, "-m", "service.cli", "index", "build", "--corpus",
                        str(ROOT / "data" / "articles"), "--index", str(index_dir)],
                       cwd=ROOT, check=True, stdout=log, stderr=log)
        plan = []
        if (ROOT / "bench" / "embedding.py").exists():
            plan.append(("embedding", "Embedding backends", ["--runs", str(runs)]))
        plan.append(("ask", "Question answering in-process",
                     ["--index", str(index_dir), "--runs", str(runs)]))
        plan.append(("http_load", "Over HTTP: load, start-up, memory",
                     ["--index", str(index_dir), "--runs", str(runs),
                      "--seconds", "2" if args.quick else "5"]))
        if args.bbc.exists():
            limit = 100 if args.quick else args.index_limit
            plan.append(("index_corpus", "Indexing the BBC corpus",
                         ["--corpus", str(args.bbc), "--runs", str(runs),
                          *(["--limit", str(limit)] if limit else [])]))
        if (ROOT / "bench" / "scale.py").exists():
            plan.append(("scale", "Scale: 100k and 1M passages",
                         ["--runs", str(runs), *(["--quick"] if args.quick else [])]))
        for name, title, script_args in plan:
            text, data, wall = _run(name, script_args, log)
            results[name] = data
            cmd = f"python bench/{name}.py {' '.join(script_args)}".replace(str(ROOT) + "/", "")
            sections.append((title, f"`{cmd}` ({wall:.0f} s)", text))
    md = ["# Benchmark results", "",
          f"Produced by `make bench` ({'quick mode: fewer, shorter runs' if args.quick else f'{runs} runs per figure'})"
          " on " + env_machine["date"] + ". Every figure is the median of the runs, with "
          "(min-max); the machine is shared and noisy, so compare ratios within one run.", "",
          f"Machine: {env_machine['cpu']}, {env_machine['cores']} cores, "
          f"{env_machine['memory_gb']} GB RAM, Python {env_machine['python']}, "
          f"{env_machine['platform']}; 1-minute load average at start "
          f"{env_machine['load_1min_at_start']}.", "",
          "## Targets", "", targets(results), ""]
    for title, cmd, text in sections:
        md += [f"## {title}", "", cmd, "", text]
    notes = ROOT / "bench" / "NOTES.md"
    if notes.exists():
        md += [notes.read_text().strip(), ""]
    (ROOT / "bench" / "RESULTS.md").write_text("\n".join(md))
    (OUT / "results.json").write_text(json.dumps({"machine": env_machine, **results}, indent=1))
    print("wrote bench/RESULTS.md", file=sys.stderr)


if __name__ == "__main__":
    main()
