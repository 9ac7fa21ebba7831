"""Embedding backends: ONNX parity with PyTorch, the export cache, and errors."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from indexing import embedding
from indexing.embedding import BACKENDS, Embedder, EmbeddingBackendError, cached_onnx_model
from tests.conftest import ARTICLES

TEXTS = [
    "Ukrainian intelligence estimates that approximately 12,000 North Korean soldiers have "
    "been deployed to join Russian forces.",
    "How many troops were reported?",
    "",
    "   padded with spaces   ",
    "Naïve café owners in Zürich — “quoted” — paid £1.2bn (€1.4bn).",
    " ".join(["truncated"] * 400),  # longer than the model's 256 tokens
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_embedder(indexer):
    if indexer.embedder.backend == "torch":
        return indexer.embedder
    return Embedder(backend="torch")


@pytest.fixture(scope="module")
def onnx_embedder(cache_dir):
    return Embedder(backend="onnx", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def int8_embedder(cache_dir, onnx_embedder):
    return Embedder(backend="onnx-int8", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def texts():
    article = (ARTICLES / "000_f15d0a015cddc7c4.txt").read_text()
    return TEXTS + [line for line in article.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def torch_vectors(torch_embedder, texts):
    return torch_embedder.encode(texts)


def test_onnx_fp32_matches_torch(torch_embedder, onnx_embedder, texts, torch_vectors):
    vectors = onnx_embedder.encode(texts)
    assert vectors.shape == torch_vectors.shape and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (torch_vectors * vectors).sum(axis=1).min() > 0.9999
    assert float(torch_vectors[1] @ onnx_embedder.encode_one(TEXTS[1])) > 0.9999


def test_onnx_int8_close_to_torch(int8_embedder, texts, torch_vectors):
    cos = (torch_vectors * int8_embedder.encode(texts)).sum(axis=1)
    # Measured on BBC sentences: median 0.996, minimum 0.993 (bench/README.md).
    assert cos.min() > 0.98
    assert np.median(cos) > 0.99


def test_int8_vector_does_not_depend_on_batch_mates(int8_embedder, texts):
    alone = int8_embedder.encode([texts[0]])[0]
    assert np.array_equal(int8_embedder.encode(texts)[0], alone)
    assert np.array_equal(int8_embedder.encode_one(texts[0]), alone)


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_concurrent_workers_give_the_vectors_one_worker_gives(cache_dir, texts, backend):
    one = Embedder(backend=backend, cache_dir=cache_dir, workers=1, batch_size=4)
    many = Embedder(backend=backend, cache_dir=cache_dir, workers=3, batch_size=4)
    assert np.array_equal(many.encode(texts * 3), one.encode(texts * 3))


def test_token_counts_and_limits_match(torch_embedder, onnx_embedder, texts):
    # Chunk boundaries depend on count_tokens: equal counts keep stored chunks identical.
    for text in texts:
        assert onnx_embedder.count_tokens(text) == torch_embedder.count_tokens(text)
    assert (onnx_embedder.dim, onnx_embedder.max_tokens) == (torch_embedder.dim,
                                                             torch_embedder.max_tokens)


def test_empty_input(onnx_embedder):
    assert onnx_embedder.encode([]).shape == (0, onnx_embedder.dim)


def test_second_load_reuses_cache(cache_dir, onnx_embedder, monkeypatch):
    path = onnx_embedder.onnx_path
    mtime = path.stat().st_mtime_ns

    def no_export(*_args):
        raise AssertionError("exported again although the cache holds a valid model")

    monkeypatch.setattr(embedding, "_export_fp32", no_export)
    monkeypatch.setattr(embedding, "_quantize_int8", no_export)
    again = Embedder(backend="onnx", cache_dir=cache_dir)
    assert again.onnx_path == path and path.stat().st_mtime_ns == mtime
    assert np.allclose(again.encode(TEXTS[:2]), onnx_embedder.encode(TEXTS[:2]))


@pytest.fixture()
def fake_model(tmp_path, monkeypatch):
    """A model directory whose "export" writes a small file and counts the calls."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    calls = []

    def fake_export(_model_dir, target):
        calls.append(target)
        target.write_bytes(b"exported model " * 100)
        return {"dim": 3, "max_seq_length": 8}

    monkeypatch.setattr(embedding, "_export_fp32", fake_export)
    return model_dir, calls


@pytest.mark.parametrize("damage", ["truncate", "flip", "no-meta"])
def test_corrupt_cache_is_exported_again(fake_model, tmp_path, caplog, damage):
    model_dir, calls = fake_model
    cache = tmp_path / "cache"
    path, _ = cached_onnx_model(model_dir, "fp32", cache)
    assert len(calls) == 1 and cached_onnx_model(model_dir, "fp32", cache)[0] == path
    assert len(calls) == 1  # reused
    good = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(good[:10])
    elif damage == "flip":
        path.write_bytes(good[:-1] + b"X")
    else:
        (path.parent / "export.json").unlink()
    with caplog.at_level(logging.WARNING, logger="indexing.embedding"):
        again, meta = cached_onnx_model(model_dir, "fp32", cache)
    assert len(calls) == 2, "a corrupt cache entry must be exported again"
    assert f"cached ONNX model {path.parent} is unusable" in caplog.text
    assert ("checksum mismatch" if damage != "no-meta" else "export.json unreadable") in caplog.text
    assert again == path and path.read_bytes() == good and meta["dim"] == 3
    assert [p.name for p in (cache / "onnx").iterdir()] == [path.parent.name]  # no leftovers


def test_concurrent_first_use_keeps_the_published_entry(tmp_path, monkeypatch):
    # Another process publishes the entry while this one is still exporting: this one
    # must use theirs and leave no temporary directory behind.
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    cache = tmp_path / "cache"

    def slow_export(_model_dir, target):
        target.write_bytes(b"mine")
        theirs = target.parent.parent / f"{embedding._model_hash(model_dir)}-fp32"
        theirs.mkdir()
        (theirs / "model.onnx").write_bytes(b"theirs")
        meta = {"sha256": embedding._sha256(theirs / "model.onnx"), "dim": 3,
                "max_seq_length": 8}
        (theirs / "export.json").write_text(json.dumps(meta))
        return {"dim": 3, "max_seq_length": 8}

    monkeypatch.setattr(embedding, "_export_fp32", slow_export)
    path, meta = cached_onnx_model(model_dir, "fp32", cache)
    assert path.read_bytes() == b"theirs" and meta["dim"] == 3
    assert [p.name for p in (cache / "onnx").iterdir()] == [path.parent.name]


def test_unwritable_cache_is_a_clear_error(fake_model, tmp_path):
    model_dir, _calls = fake_model
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(EmbeddingBackendError, match="ARTICLE_QA_CACHE_DIR to a writable"):
        cached_onnx_model(model_dir, "fp32", blocker / "cache")


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(EmbeddingBackendError, match="unknown embedding backend 'tensorrt'") as err:
        Embedder(backend="tensorrt")
    for name in BACKENDS:
        assert name in str(err.value)


def test_backend_from_environment(monkeypatch):
    monkeypatch.setenv("ARTICLE_QA_EMBED_BACKEND", "bogus")
    with pytest.raises(EmbeddingBackendError, match="ARTICLE_QA_EMBED_BACKEND"):
        Embedder()

