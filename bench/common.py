"""Shared helpers for the benchmark scripts: statistics, the machine, questions, servers."""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from eval.metrics import percentile  # noqa: F401  (re-exported for the bench scripts)

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / "eval" / "datasets"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def summary(values: Sequence[float], digits: int = 1) -> dict:
    """Median, min and max of repeated measurements."""
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "runs": len(values)}


def fmt(s: dict, unit: str = "") -> str:
    """`median (min-max)` for a table cell."""
    return f"{s['median']:,}{unit} ({s['min']:,}-{s['max']:,})"


def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.+)", text).group(1).strip()
    except (OSError, AttributeError):
        pass
    mem_gb = None
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem_gb = round(kb / 1024 / 1024, 1)
    except (OSError, AttributeError):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem_gb,
            "python": platform.python_version(), "platform": platform.platform(),
            "load_1min_at_start": round(load, 2) if load is not None else None,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def questions(min_count: int = 200) -> list[str]:
    """Distinct questions from the bundled gold sets, plus lower-cased unpunctuated variants
    (the way people type into a search box) until there are at least `min_count`."""
    base = [json.loads(line)["question"]
            for name in ("bundled-dev.jsonl", "bundled-test.jsonl")
            for line in (DATASETS / name).read_text().splitlines() if line.strip()]
    out = list(dict.fromkeys(base))
    for q in base:
        if len(out) >= min_count:
            break
        variant = re.sub(r"[^\w\s,'-]", "", q).lower().strip()
        if variant and variant not in out:
            out.append(variant)
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (from /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`article-qa serve` in a child process on a free loopback port."""

    def __init__(self, index: Path, env: dict[str, str] | None = None, args: Sequence[str] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "service.cli", "serve", "--index", str(index),
               "--port", str(self.port), *args]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_first_answer(self, question: str, timeout: float = 120.0) -> float:
        """Seconds from spawning the process to the first answered /ask."""
        body = json.dumps({"question": question}).encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                req = urllib.request.Request(self.url + "/ask", data=body,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=30) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.02)
        raise TimeoutError("server did not answer in time")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
