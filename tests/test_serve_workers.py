"""`article-qa serve --workers 2`: several processes answer on one port, and stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from tests.conftest import ROOT, free_port


def _get(url: str, data: bytes | None = None) -> dict:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_serve_with_two_workers_answers_and_stops(index_copy):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--index", str(index_copy),
         "--port", str(port), "--workers", "2"],
        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
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
        answers = [_get(base + "/ask", json.dumps({"question": "how many troops were reported?"})
                        .encode()) for _ in range(4)]
        assert all(a["answer"] for a in answers)
        assert len({a["answer"] for a in answers}) == 1  # every worker reads the same index
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
