"""Shared fixtures: the real models are loaded once per test session."""

from __future__ import annotations

import os
import shutil
import socket
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
