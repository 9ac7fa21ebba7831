"""One client asking question after question, as an evaluation or a benchmark does, against
a real `article-qa serve` at its default settings: every request is answered."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter

import pytest
from click.testing import CliRunner

from eval.cli import main  # the console script with its eval group attached
from tests.conftest import ROOT, serving

GOLD_SETS = sorted((ROOT / "eval" / "datasets").glob("*.jsonl"))


def _gold() -> list[dict]:
    return [json.loads(line) for path in GOLD_SETS
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def server(built_index, tmp_path_factory):
    import shutil

    index = tmp_path_factory.mktemp("load") / "index"
    shutil.copytree(built_index, index)
    with serving(index) as base:
        yield base


def _ask(base: str, question: str) -> int:
    request = urllib.request.Request(base + "/ask", data=json.dumps({"question": question})
                                     .encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_default_server_answers_500_sequential_questions(server):
    questions = [g["question"] for g in _gold()]
    statuses = Counter(_ask(server, questions[i % len(questions)]) for i in range(500))
    assert statuses == {200: 500}


def test_eval_over_http_answers_every_question(server, tmp_path):
    # The bundled gold questions, repeated under new ids up to 300: what is tested is that
    # a long run over HTTP loses no answer, not how good the answers are.
    gold = _gold()
    lines = [{**gold[i % len(gold)], "id": f"load-{i:03d}"} for i in range(300)]
    dataset = tmp_path / "gold.jsonl"
    dataset.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["eval", "run", "--dataset", str(dataset), "--url",
                                       server, "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(results) == 300
    failed = [(r["id"], r["error"]) for r in results if r["error"] is not None]
    assert not failed, f"{len(failed)} questions got no answer, e.g. {failed[:3]}"
    overall = json.loads((out / "report.json").read_text())["metrics"]["system"]["overall"]
    assert overall["questions"] == 300 and overall["errors"] == 0
