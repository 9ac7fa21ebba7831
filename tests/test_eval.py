"""The evaluation harness, its baselines, reports and the `article-qa eval` commands.

Most tests drive the harness with a fake system returning canned answers, so every
number can be checked by hand; a few run the real pipeline on the session index.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from eval import cli as eval_cli
from eval.baselines import BestSentenceReader, default_names
from eval.cli import main
from eval.gold import GoldQuestion
from eval.harness import EvalError, as_body, check_thresholds, parse_thresholds, run_eval
from eval.metrics import paired_difference, squad_scores
from eval.report import format_table, write_report
from indexing.errors import DocumentNotFoundError
from service.answers import Answer, Citation, aggregate
from service.qa import QAResult, QuestionError
from service.retrieval import Evidence, Passage
from service.settings import Settings
from tests.conftest import ROOT, free_port

DOCS = {
    "A": "Officials said 12,000 troops were deployed. The leader was Kim Jong Un.",
    "B": "The summit was held in Pyongyang in June 2024.",
}
GOLD = [
    GoldQuestion("q1", "How many troops were deployed?", ("12,000",), ("A",), "count"),
    GoldQuestion("q2", "Who is the leader?", ("Kim Jong Un",), ("B",), "person"),
    GoldQuestion("q3", "What is the capital of Mars?", (), (), "unanswerable"),
    GoldQuestion("q4", "Where is the moon base?", (), (), "unanswerable"),
]


def cite(doc_id: str, span: str, quote: str, shift: int = 0) -> Citation:
    text = DOCS[doc_id]
    q0 = text.index(quote)
    s0 = text.index(span, q0) + shift
    return Citation(doc_id, None, None, span, s0, s0 + len(span), quote, q0, q0 + len(quote))


def passage(doc_id: str, *also_in: str) -> Passage:
    text = DOCS[doc_id]
    return Passage(0, doc_id, None, None, 0, len(text), text, 1.0, 0, 0, also_in)


def result(question: str, answers: list[Answer], passages: list[Passage]) -> QAResult:
    top = answers[0] if answers else None
    return QAResult(question, top.text if top else None, top.confidence if top else 0.1, False,
                    tuple(answers), tuple(passages), {"total": 1.0})


SENT_A1 = "Officials said 12,000 troops were deployed."
SENT_A2 = "The leader was Kim Jong Un."
SENT_B = "The summit was held in Pyongyang in June 2024."
CANNED = {
    # q1: right value with an extra word: EM 0, F1 2/3, correct; valid citation; R@1 = 1.
    GOLD[0].question: result(GOLD[0].question, [
        Answer("12,000 troops", 0.9, (cite("A", "12,000 troops", SENT_A1),))], [passage("A")]),
    # q2: wrong answer from the wrong sentence; a second answer whose citation is off by one;
    # the gold document only as a near-duplicate of the first passage: rank 2.
    GOLD[1].question: result(GOLD[1].question, [
        Answer("Officials", 0.6, (cite("A", "Officials", SENT_A1),)),
        Answer("Kim Jong Un", 0.5, (cite("A", "Kim Jong Un", SENT_A2, shift=1),))],
        [passage("A", "B")]),
    # q3: abstains (right).
    GOLD[2].question: result(GOLD[2].question, [], [passage("B")]),
    # q4: answers an unanswerable question (wrong).
    GOLD[3].question: result(GOLD[3].question, [
        Answer("Pyongyang", 0.3, (cite("B", "Pyongyang", SENT_B),))], [passage("B")]),
}


def fake_system(question: str) -> QAResult:
    return CANNED[question]


class FakeIndex:
    def document(self, doc_id):
        if doc_id not in DOCS:
            raise DocumentNotFoundError(doc_id)
        return type("Doc", (), {"text": DOCS[doc_id]})()


class FakePipeline:
    """Looks like a QAPipeline to the harness: `ask` and `index.document(...).text`."""

    index = FakeIndex()

    def ask(self, question: str) -> QAResult:
        return fake_system(question)


@pytest.fixture(scope="module")
def fake_run():
    return run_eval(GOLD, {"system": fake_system, "as-json": lambda q: as_body(fake_system(q))},
                    progress=False, document_text=DOCS.get)


# --------------------------------------------------------------------------- baseline


def _evidence(doc_id: str, start: int, text: str, vector) -> Evidence:
    v = np.asarray(vector, np.float32)
    return Evidence(doc_id, None, None, start, start + len(text), text, None, v / np.linalg.norm(v))


def test_best_sentence_answers_with_the_most_similar_whole_sentence():
    reader = BestSentenceReader()
    q = np.array([1.0, 0.0, 0.0], np.float32)
    evidence = [_evidence("A", 0, "Far away.", [0.2, 1.0, 0.0]),
                _evidence("A", 10, "Close by.", [1.0, 0.3, 0.0]),
                _evidence("B", 5, "Opposite.", [-1.0, 0.0, 0.1])]
    spans = reader.read("q?", q, evidence)
    assert [s.text for s in spans] == ["Close by.", "Far away.", "Opposite."]
    best = spans[0]
    assert (best.start, best.end) == (10, 19) and best.evidence is evidence[1]
    assert best.confidence == pytest.approx(1.0 / np.sqrt(1.09), abs=1e-6)
    assert spans[-1].confidence == 0.0  # negative cosine clipped to 0
    assert len(reader.read("q?", q, evidence, limit=1)) == 1

    answers, _ = aggregate(spans, reader.threshold)
    c = answers[0].citations[0]
    assert answers[0].text == "Close by." and (c.start, c.end) == (c.quote_start, c.quote_end)
    # Nothing similar enough: the baseline abstains like the real reader.
    far = [_evidence("A", 0, "Unrelated.", [0.1, 1.0, 0.0])]
    assert aggregate(reader.read("q?", q, far), reader.threshold) == ([], False)


# --------------------------------------------------------------------------- harness


def test_harness_aggregates_by_hand(fake_run):
    m = fake_run.metrics["system"]["overall"]
    assert (m["questions"], m["answered"], m["abstained"], m["errors"]) == (4, 3, 1, 0)
    assert m["exact"] == pytest.approx(1 / 4)  # only the abstention on q3 is exact
    assert m["f1"] == pytest.approx((2 / 3 + 0 + 1 + 0) / 4)
    assert m["has_ans_exact"] == 0 and m["has_ans_f1"] == pytest.approx(1 / 3)
    assert m["no_ans_accuracy"] == 0.5 and m["accuracy"] == 0.5
    assert (m["abstention_precision"], m["abstention_recall"]) == (1.0, 0.5)
    assert m["evidence_accuracy"] == 0.5
    assert (m["citations"], m["citation_validity"]) == (4, 0.75)
    assert m["retrieval_questions"] == 2
    assert (m["recall@1"], m["recall@5"], m["mrr"]) == (0.5, 1.0, 0.75)
    # q2's answer is in its first passage even though the gold document ranks second.
    assert (m["answer_recall@1"], m["answer_recall@5"]) == (1.0, 1.0)
    ranks = {r.id: r.answer_rank for r in fake_run.for_system("system")}
    assert ranks == {"q1": 1, "q2": 1, "q3": None, "q4": None}
    # (0.9, right), (0.6, wrong), (0.3, wrong), one per bin: (0.1 + 0.6 + 0.3) / 3.
    assert m["calibration_questions"] == 3 and m["ece"] == pytest.approx(1 / 3)
    assert 0 <= m["latency_p50_ms"] <= m["latency_p95_ms"]

    # The official script agrees on EM/F1 (it reports percent).
    official = squad_scores({r.id: r.prediction for r in fake_run.for_system("system")},
                            {g.id: list(g.answers) for g in GOLD})
    assert m["exact"] * 100 == pytest.approx(official["exact"])
    assert m["f1"] * 100 == pytest.approx(official["f1"])

    by_type = fake_run.metrics["system"]["by_type"]
    assert list(by_type) == ["count", "person", "unanswerable"]
    assert by_type["count"]["f1"] == pytest.approx(2 / 3) and by_type["person"]["f1"] == 0
    assert by_type["unanswerable"]["questions"] == 2 and by_type["unanswerable"]["f1"] == 0.5
    bins = fake_run.metrics["system"]["reliability"]
    assert [b["count"] for b in bins] == [0, 0, 0, 1, 0, 0, 1, 0, 0, 1]

    # An /ask JSON body is scored exactly like the QAResult it came from.
    as_json = fake_run.metrics["as-json"]["overall"]
    assert {k: v for k, v in as_json.items() if "latency" not in k} == \
        {k: v for k, v in m.items() if "latency" not in k}


def test_conflict_precision_and_recall_by_hand():
    gold = [GoldQuestion(f"c{i}", f"How many troops, report {i}?", ("12,000",), ("A",), "count",
                         conflict=i < 2) for i in range(4)]
    # c0: the disagreement is reported; c1: it is missed; c2 and c3: false alarms.
    reported = {0: True, 1: False, 2: True, 3: True}

    def system(question: str) -> QAResult:
        i = int(question.rsplit(" ", 1)[1].rstrip("?"))
        answer = Answer("12,000", 0.9, (cite("A", "12,000", SENT_A1),), "count")
        return QAResult(question, answer.text, 0.9, reported[i], (answer,), (passage("A"),),
                        {"total": 1.0})

    m = run_eval(gold, {"system": system}, progress=False,
                 document_text=DOCS.get).metrics["system"]["overall"]
    assert (m["conflict_questions"], m["conflicts_reported"]) == (2, 3)
    assert m["conflict_precision"] == pytest.approx(1 / 3) and m["conflict_recall"] == 0.5
    # Neither is defined where nothing is marked or reported.
    none = run_eval(GOLD[2:], {"system": fake_system}, progress=False).metrics["system"]
    assert none["overall"]["conflict_precision"] is None
    assert none["overall"]["conflict_recall"] is None


def test_harness_per_question_records(fake_run, tmp_path):
    q2 = next(r for r in fake_run.for_system("system") if r.id == "q2")
    assert q2.ranked_doc_ids == ("A", "B") and q2.reciprocal_rank == 0.5
    assert (q2.citations_checked, q2.citations_valid) == (2, 1)
    assert q2.prediction == "Officials" and q2.evidence_correct is False
    q3 = next(r for r in fake_run.for_system("system") if r.id == "q3")
    assert q3.abstained and q3.prediction == "" and q3.confidence is None and q3.correct

    path = fake_run.write_jsonl(tmp_path / "results.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 8 and {(r["system"], r["id"]) for r in lines} >= {("system", "q1")}
    assert lines[0]["citations"][0]["span"] == "12,000 troops"


def test_a_rejected_question_is_an_error_and_an_abstention():
    def picky(question):
        if "Mars" in question:
            raise QuestionError("question is too strange")
        return fake_system(question)

    run = run_eval(GOLD, {"system": picky}, progress=False, document_text=DOCS.get)
    q3 = next(r for r in run.results if r.id == "q3")
    assert q3.error == "question is too strange" and q3.abstained
    assert run.metrics["system"]["overall"]["errors"] == 1
    with pytest.raises(EvalError, match="empty"):
        run_eval([], {"system": picky}, progress=False)


def test_thresholds():
    assert parse_thresholds("f1=0.5, citation_validity=1") == {"f1": 0.5, "citation_validity": 1.0}
    for bad, message in (("f2=0.5", "unknown metric 'f2'"), ("f1", "NAME=VALUE"),
                         ("f1=50", "fractions"), ("ece=0.1", "lower is better"),
                         ("f1=high", "not a number")):
        with pytest.raises(EvalError, match=message):
            parse_thresholds(bad)
    failures = check_thresholds({"f1": 0.4, "mrr": 0.9, "abstention_recall": None},
                                {"f1": 0.5, "mrr": 0.5, "abstention_recall": 0.1})
    assert len(failures) == 2 and "f1 = 0.4000 is under 0.5" in failures[0]
    assert "undefined" in failures[1]


# --------------------------------------------------------------------------- report


def test_report_files(fake_run, tmp_path):
    files = write_report(fake_run, tmp_path / "out", dataset="gold.jsonl", index="ix")
    report = json.loads(files.json.read_text())
    assert report["dataset"] == "gold.jsonl" and report["index"] == "ix"
    assert report["metrics"]["system"]["overall"]["f1"] == pytest.approx(5 / 12)
    assert len(report["metrics"]["system"]["reliability"]) == 10
    md = files.markdown.read_text()
    assert "| system | n | EM | F1 | HasAns F1 |" in md and "| system | 4 | 0.250 | 0.417 |" in md
    assert "## F1 by question type" in md and "| unanswerable | 2 |" in md
    for chart in files.charts:
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({chart.name})" in md
    assert len(files.results.read_text().splitlines()) == 8

    table = format_table(fake_run)
    assert table.splitlines()[0].split()[:4] == ["system", "n", "EM", "F1"]
    assert "1.00/0.50" in table and "0.750" in table
    assert "confl P/R" in table.splitlines()[0]  # undefined here: no conflicts either way
    # The same answers through JSON: no question differs, and the interval says so.
    same = report["comparisons"]["against"]["as-json"]
    assert report["comparisons"]["system"] == "system"
    assert (same["difference"], same["low"], same["high"], same["differ"]) == (0, 0, 0, 0)
    assert "## `system` against the others" in md and "| as-json | +0.000 |" in md


def test_paired_difference_interval():
    tied = paired_difference([0.5, 1.0, 0.0], [0.5, 1.0, 0.0])
    assert (tied["difference"], tied["low"], tied["high"], tied["differ"]) == (0, 0, 0, 0)
    # Better on 30 questions of 40, never worse: the whole interval is above 0.
    better = paired_difference([1.0] * 30 + [0.0] * 10, [0.0] * 40)
    assert better["difference"] == pytest.approx(0.75)
    assert 0 < better["low"] < 0.75 < better["high"] <= 1.0
    assert (better["better"], better["worse"], better["questions"]) == (30, 0, 40)
    # One win and one loss in 40: the interval straddles 0.
    mixed = paired_difference([1.0, 0.0] + [0.5] * 38, [0.0, 1.0] + [0.5] * 38)
    assert mixed["low"] < 0 < mixed["high"] and mixed["differ"] == 2
    assert paired_difference([1.0, 0.0], [0.0, 1.0]) == paired_difference([1.0, 0.0], [0.0, 1.0])
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 0.0])
    with pytest.raises(ValueError):
        paired_difference([], [])


# --------------------------------------------------------------------------- CLI


def _gold_file(tmp_path, lines: list[str], name: str = "gold.jsonl"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _line(g: GoldQuestion) -> str:
    return json.dumps({"id": g.id, "question": g.question, "answers": list(g.answers),
                       "doc_ids": list(g.doc_ids), "type": g.type})


def _invoke(*args):
    return CliRunner().invoke(main, ["eval", *map(str, args)])


def test_cli_input_errors(tmp_path):
    good = _gold_file(tmp_path, [_line(g) for g in GOLD])
    cases = [
        (["--dataset", _gold_file(tmp_path, [_line(GOLD[0]), "{not json"], "bad.jsonl")],
         "bad.jsonl:2: invalid JSON"),
        (["--dataset", _gold_file(tmp_path, [], "empty.jsonl")], "the gold set is empty"),
        (["--dataset", tmp_path / "missing.jsonl"], "does not exist"),
        (["--dataset", good, "--url", "http://127.0.0.1:9"], "cannot reach http://127.0.0.1:9"),
        (["--dataset", good, "--url", "127.0.0.1:9"], "not an http(s) URL"),
        (["--dataset", good, "--url", "http://127.0.0.1:9", "--index", tmp_path],
         "leave out --index"),
        (["--dataset", good, "--url", "http://127.0.0.1:9", "--min-confidence", "0.5"],
         "applies in-process"),
        (["--dataset", good, "--fail-under", "f2=0.5"], "unknown metric 'f2'"),
        (["--dataset", good, "--index", tmp_path / "noindex"], "no index in"),
    ]
    for args, message in cases:
        result = _invoke("run", "--out", tmp_path / "out", *args)
        assert result.exit_code == 1, result.output
        assert "error:" in result.output and message in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_cli_fail_under_exit_codes(tmp_path, monkeypatch):
    monkeypatch.setattr(eval_cli, "_pipelines", lambda *a: {"system": FakePipeline()})
    gold = _gold_file(tmp_path, [_line(g) for g in GOLD])
    out = tmp_path / "out"
    result = _invoke("run", "--dataset", gold, "--out", out, "--fail-under", "f1=0.4,mrr=0.75")
    assert result.exit_code == 0, result.output
    assert "system" in result.output and "0.417" in result.output
    assert (out / "report.md").exists() and (out / "results.jsonl").exists()

    result = _invoke("run", "--dataset", gold, "--out", out,
                     "--fail-under", "f1=0.5,citation_validity=1.0,mrr=0.5")
    assert result.exit_code == 1, result.output
    assert "f1 = 0.4167 is under 0.5" in result.output
    assert "citation_validity = 0.7500 is under 1" in result.output
    assert "mrr" not in result.output.split("not met")[1]
    assert (out / "report.json").exists()  # reports are written before failing


REAL_GOLD = [
    '{"id": "r1", "question": "How many North Korean soldiers have been deployed to join '
    'Russian forces?", "answers": ["approximately 12,000", "12,000"], '
    '"doc_ids": ["000_f15d0a015cddc7c4"], "type": "count"}',
    '{"id": "r2", "question": "What is the recipe for a good sourdough bread?", '
    '"answers": [], "type": "unanswerable"}',
]


def _real_run(tmp_path, monkeypatch, built_index, indexer, *args) -> tuple[dict, list, Path]:
    """`eval run` over REAL_GOLD on the session index: (report.json, results.jsonl rows, out)."""
    monkeypatch.setattr(eval_cli, "make_indexer", lambda settings: indexer)
    gold = _gold_file(tmp_path, REAL_GOLD)
    out = tmp_path / "out"
    result = _invoke("run", "--dataset", gold, "--index", built_index, "--out", out, *args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    return report, lines, out


@pytest.mark.slow
def test_cli_real_pipeline_with_baselines(tmp_path, monkeypatch, built_index, indexer):
    report, lines, _ = _real_run(tmp_path, monkeypatch, built_index, indexer,
                                 "--fail-under", "citation_validity=1.0,recall@5=1.0")
    # Both readers are in every report: the service's, and the other one beside it.
    other = {"feature": "neural-reader", "neural": "feature-reader"}[Settings().reader]
    assert report["systems"] == ["system", other, "lexical-only", "dense-only", "best-sentence"]
    assert report["meta"]["reader"] == Settings().reader
    for system in report["systems"]:
        overall = report["metrics"][system]["overall"]
        assert overall["questions"] == 2 and overall["citation_validity"] in (None, 1.0)
    best = next(r for r in lines if r["system"] == "best-sentence" and r["id"] == "r1")
    if not best["abstained"]:
        c = best["citations"][0]
        assert (c["start"], c["end"], c["span"]) == (c["quote_start"], c["quote_end"], c["quote"])


def test_default_names_compare_the_other_reader_once(monkeypatch):
    for kind, other in (("feature", "neural-reader"), ("neural", "feature-reader")):
        monkeypatch.setenv("ARTICLE_QA_READER", kind)
        names = default_names(Settings())
        assert names[:2] == ("system", other) and len(set(names)) == len(names) == 5
        assert default_names(Settings(), baselines=False) == ("system",)
    monkeypatch.setenv("ARTICLE_QA_READER", "bert")
    with pytest.raises(ValueError, match="choose feature or neural"):
        Settings()


@pytest.mark.slow
def test_cli_min_confidence_sets_the_cut_for_every_span_reader(tmp_path, monkeypatch,
                                                                built_index, indexer):
    report, lines, out = _real_run(tmp_path, monkeypatch, built_index, indexer,
                                   "--min-confidence", "1.0")
    assert report["meta"]["answer_threshold"]["value"] == 1.0
    assert "answers at confidence >= 1.000" in (out / "report.md").read_text()
    # No confidence reaches 1: the span readers abstain on both questions, which is right
    # only for the unanswerable one. The best-sentence baseline keeps its own cosine cut.
    for system in ("system", "lexical-only", "dense-only"):
        overall = report["metrics"][system]["overall"]
        assert overall["f1"] == 0.5 and overall["abstained"] == 2, (system, overall)
    assert not next(r for r in lines if r["system"] == "best-sentence"
                    and r["id"] == "r1")["abstained"]


@pytest.fixture()
def server(built_index, indexer):
    """`article-qa serve` on the session index, in a thread, on a free port."""
    import uvicorn

    from service.app import create_app
    from service.qa import QAPipeline
    from service.settings import Settings

    settings = Settings(index=built_index)
    app = create_app(settings, pipeline=QAPipeline(settings, indexer=indexer))
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "server did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_cli_url_mode_against_a_running_server(tmp_path, server):
    gold = _gold_file(tmp_path, REAL_GOLD)
    out = tmp_path / "out"
    result = _invoke("run", "--dataset", gold, "--url", server + "/", "--out", out,
                     "--fail-under", "citation_validity=1.0")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["systems"] == ["system"] and report["index"] == server + "/"
    overall = report["metrics"]["system"]["overall"]
    assert overall["questions"] == 2 and overall["retrieval_questions"] == 1
    assert overall["recall@5"] == 1.0


def test_cli_score(tmp_path):
    gold = _gold_file(tmp_path, [_line(g) for g in GOLD])
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps({"q1": "12,000", "q2": "Kim", "q3": "", "q4": None}))
    result = _invoke("score", preds, "--dataset", gold)
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    # q1 exact, q2 F1 1/2, q3 and q4 abstentions (right on unanswerable questions).
    assert scores["exact"] == 0.75 and scores["f1"] == pytest.approx(3.5 / 4)
    assert scores["total"] == 4 and scores["NoAns_f1"] == 1.0

    preds.write_text(json.dumps({"q1": "12,000", "zz": "x"}))
    result = _invoke("score", preds, "--dataset", gold)
    assert result.exit_code == 1 and "error: 1 prediction id(s) are not in" in result.output
    assert "'zz'" in result.output
    preds.write_text("[1, 2]")
    result = _invoke("score", preds, "--dataset", gold)
    assert result.exit_code == 1 and "must be a JSON object" in result.output


def test_eval_group_is_attached_without_service_importing_eval():
    result = CliRunner().invoke(main, ["eval", "--help"])
    assert result.exit_code == 0 and "import-squad" in result.output and "score" in result.output
    code = ("import sys, service.cli, service.app, service.qa; "
            "bad = [m for m in sys.modules if m == 'eval' or m.startswith('eval.')]; "
            "assert not bad, bad; assert 'eval' not in service.cli.main.commands")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
