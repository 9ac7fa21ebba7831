"""The regression gate: answer quality on the held-out bundled test split must not drop."""

from __future__ import annotations

from click.testing import CliRunner

from eval.cli import main
from tests.conftest import ROOT

TEST_SPLIT = ROOT / "eval" / "datasets" / "bundled-test.jsonl"
# A little under what the system reaches (F1 0.494, EM 0.464, evidence 0.80 on 2026-11-23);
# every citation must reproduce its text exactly.
GATE = "f1=0.44,exact=0.40,citation_validity=1.0,evidence_accuracy=0.75"


def test_quality_gate_on_bundled_test_split(built_index, tmp_path):
    result = CliRunner().invoke(main, [
        "eval", "run", "--dataset", str(TEST_SPLIT), "--index", str(built_index),
        "--out", str(tmp_path), "--no-baselines", "--fail-under", GATE,
    ])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.md").exists()
