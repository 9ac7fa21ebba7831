"""`article-qa serve --workers 2`: several processes answer on one port, and stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter

from tests.conftest import ROOT, default_env, free_port, serving

QUESTION = json.dumps({"question": "how many troops were reported?"}).encode()


def _get(url: str, data: bytes | None = None) -> dict:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_serve_with_two_workers_answers_and_stops(index_copy):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--index", str(index_copy),
         "--port", str(port), "--workers", "2"],
        cwd=ROOT, env=default_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                health = _get(base + "/health")
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.2)
        assert health["documents"] == 5
        answers = [_get(base + "/ask", QUESTION) for _ in range(4)]
        assert all(a["answer"] for a in answers)
        assert len({a["answer"] for a in answers}) == 1  # every worker reads the same index
        # No rate limit unless one is set: one client's questions back to back all pass.
        assert _statuses(base, 300) == {200: 300}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _statuses(base: str, n: int) -> Counter:
    statuses: Counter[int] = Counter()
    for _ in range(n):
        try:
            _get(base + "/ask", QUESTION)
            statuses[200] += 1
        except urllib.error.HTTPError as exc:
            statuses[exc.code] += 1
    return statuses


def test_workers_apply_a_rate_limit_that_is_set(index_copy):
    """ARTICLE_QA_RATE_LIMIT reaches every worker (each counts its own buckets)."""
    env = default_env(ARTICLE_QA_RATE_LIMIT="2/minute", ARTICLE_QA_RATE_BURST="2")
    with serving(index_copy, "--workers", "2", env=env) as base:
        statuses = _statuses(base, 12)
    # Two workers with a burst of 2 each let at most 4 through.
    assert statuses[200] <= 4 and statuses[429] >= 8, statuses
