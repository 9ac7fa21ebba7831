"""Shared fixtures: the real models are loaded once per test session."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
ARTICLES = ROOT / "data" / "articles"
SHARED = ROOT.parent / "shared"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_env(**overrides: str) -> dict[str, str]:
    """This environment without any ARTICLE_QA_* setting (a server at its defaults), plus
    `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTICLE_QA_")}
    return {**env, "HF_HUB_OFFLINE": "1", **overrides}


@contextmanager
def serving(index: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 120.0) -> Iterator[str]:
    """`article-qa serve` on `index` as a subprocess on a free loopback port; yields its base
    URL once /health answers, and stops it (SIGTERM, then SIGKILL) by process group."""
    port = free_port()
    # The log goes to a file: uvicorn logs every request, and a pipe nobody reads fills up
    # and stalls the server.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--index", str(index),
         "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=ROOT, env=default_env() if env is None else env,
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(log.read().decode(errors="replace")[-2000:])
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as resp:
                    json.loads(resp.read())
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.2)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available (../shared absent)")
    return path


@pytest.fixture(scope="session")
def indexer():
    from indexing.pipeline import Indexer

    return Indexer()


@pytest.fixture(scope="session")
def built_index(indexer, tmp_path_factory) -> Path:
    """An index of the bundled articles, built once; tests must not modify it."""
    from indexing.pipeline import build

    index_dir = tmp_path_factory.mktemp("index")
    build(ARTICLES, index_dir, indexer)
    return index_dir


@pytest.fixture()
def index_copy(built_index, tmp_path) -> Path:
    """A private, writable copy of the bundled index."""
    target = tmp_path / "index"
    shutil.copytree(built_index, target)
    return target
