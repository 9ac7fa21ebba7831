"""The neural reader over the shipped model: windows, one batched call, exact spans."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from service.qa import QAPipeline
from service.reader import MODEL_DIR, PROPOSALS, Reader, ReaderModelError, select_windows
from service.settings import Settings

QUESTIONS = ["how many troops were reported?", "Who arrived in North Korea?",
             "When did the visit take place?", "north korea russia troops kursk",
             "What is the boiling point of mercury?"]


@pytest.fixture(scope="module")
def pipeline(indexer, built_index):
    return QAPipeline(Settings(index=built_index, reader="neural"), indexer=indexer)


def _windows(pipeline, question):
    """The retrieval, question wordpieces and windows the reader reads for `question`."""
    reader = pipeline.reader
    r = pipeline.retrieve(question)
    q_ids = reader.encoder.question_ids(question)
    return r, q_ids, select_windows(reader.encoder, question, r.question_vector, r.evidence,
                                    q_ids, reader.windows)


@pytest.mark.parametrize("question", QUESTIONS)
def test_spans_are_exact_and_inside_one_sentence(pipeline, question):
    r = pipeline.retrieve(question)
    spans = pipeline.reader.read(question, r.question_vector, r.evidence)
    for s in spans:
        ev = s.evidence
        assert ev.start <= s.start < s.end <= ev.end
        assert ev.text[s.start - ev.start:s.end - ev.start] == s.text
        assert 0.0 <= s.confidence <= 1.0
    assert [s.confidence for s in spans] == sorted((s.confidence for s in spans), reverse=True)


@pytest.mark.parametrize("question", QUESTIONS)
def test_windows_fit_the_model_and_read_each_sentence_once(pipeline, question):
    reader = pipeline.reader
    r, q_ids, windows = _windows(pipeline, question)
    assert 0 < len(windows) <= reader.windows
    seen = [k for w in windows for k in w.sentences]
    assert len(seen) == len(set(seen))
    for w in windows:
        evs = [r.evidence[k] for k in w.sentences]
        assert len({ev.doc_id for ev in evs}) == 1
        assert [ev.ord for ev in evs] == list(range(evs[0].ord, evs[0].ord + len(evs)))
        for ev, start in zip(evs, w.starts):
            assert w.passage[start:start + len(ev.text)] == ev.text
        if len(evs) > 1:  # a grown window stays within the model's length
            assert len(reader.encoder.passage_pieces(w.passage)[0]) <= reader.encoder.budget(q_ids)


def test_all_windows_go_through_the_model_in_one_call(pipeline):
    reader = pipeline.reader
    calls = []
    real = reader.session

    class Counting:
        def run(self, outputs, inputs):
            calls.append(inputs["input_ids"].shape)
            return real.run(outputs, inputs)

    reader.session = Counting()
    try:
        r = pipeline.retrieve(QUESTIONS[0])
        reader.read(QUESTIONS[0], r.question_vector, r.evidence)
    finally:
        reader.session = real
    assert len(calls) == 1 and calls[0][0] > 1


@pytest.mark.parametrize("question", QUESTIONS[:3])
def test_the_feature_readers_spans_are_candidates_scored_by_the_model(pipeline, question):
    reader = pipeline.reader
    r, q_ids, windows = _windows(pipeline, question)
    in_windows = {k for w in windows for k in w.sentences}
    proposed = [s for s in reader.assist.read(question, r.question_vector, r.evidence, limit=20)
                [:reader.proposals] if r.evidence.index(s.evidence) in in_windows]
    assert proposed
    with_them = {(c.evidence, c.start, c.end)
                 for c in reader.candidates(question, r.question_vector, r.evidence)}
    reader.proposals = 0
    try:
        without = {(c.evidence, c.start, c.end)
                   for c in reader.candidates(question, r.question_vector, r.evidence)}
    finally:
        reader.proposals = PROPOSALS
    assert without <= with_them
    # Every proposal inside a window is read, unless its edges fall inside a wordpiece.
    added = {(r.evidence.index(s.evidence), s.start, s.end) for s in proposed}
    assert added - without and added - without <= with_them - without


def test_no_evidence_no_spans(pipeline):
    assert pipeline.reader.read("anything?", None, []) == []


def test_confidence_rises_with_the_span_margin(pipeline):
    reader = pipeline.reader
    rows = np.zeros((2, len(reader.weights)))
    rows[1, 0] = 5.0
    low, high = reader.calibrate(rows)
    assert high > low


def test_a_broken_model_fails_with_a_message_naming_the_fix(nlp_from_indexer, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(MODEL_DIR, model_dir, ignore=shutil.ignore_patterns("reader.onnx"))
    manifest = json.loads((model_dir / "manifest.json").read_text())
    (model_dir / manifest["model"]).write_bytes(b"not a model")
    with pytest.raises(ReaderModelError, match="make reader"):
        Reader(nlp_from_indexer, model_dir=model_dir)
    (model_dir / "manifest.json").unlink()
    with pytest.raises(ReaderModelError, match="make reader"):
        Reader(nlp_from_indexer, model_dir=model_dir)


@pytest.fixture(scope="module")
def nlp_from_indexer(indexer):
    return indexer.nlp
