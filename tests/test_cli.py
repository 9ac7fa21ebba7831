"""The `article-qa` command line through click's CliRunner."""

from __future__ import annotations

import json

from click.testing import CliRunner

from service.cli import main
from tests.conftest import ARTICLES


def test_index_build_info_remove_add(tmp_path):
    runner = CliRunner()
    index_dir = tmp_path / "ix"
    result = runner.invoke(main, ["index", "build", "--corpus", str(ARTICLES), "--index", str(index_dir)])
    assert result.exit_code == 0, result.output
    assert "5 documents (5 indexed" in result.output and "chunks" in result.output

    result = runner.invoke(main, ["index", "info", "--index", str(index_dir), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["documents"] == 5 and info["chunks"] > 5 and info["model"] == "all-MiniLM-L6-v2"

    doc = sorted(ARTICLES.glob("*.txt"))[0]
    result = runner.invoke(main, ["index", "remove", "--index", str(index_dir), doc.stem])
    assert result.exit_code == 0, result.output
    assert "4 documents" in result.output
    result = runner.invoke(main, ["index", "add", "--index", str(index_dir), str(doc)])
    assert result.exit_code == 0, result.output
    assert "5 documents" in result.output


def test_cli_errors_are_messages_not_tracebacks(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["index", "info", "--index", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "no index in" in result.output and "Traceback" not in result.output

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.txt").write_bytes(b"\xff\xfe\x00")
    result = runner.invoke(main, ["index", "build", "--corpus", str(bad), "--index", str(tmp_path / "i")])
    assert result.exit_code == 1
    assert "skipped" in result.output and "nothing to index" in result.output

    (bad / "bad name!.txt").write_text("Headline\n\nBody.\n")
    result = runner.invoke(main, ["index", "build", "--corpus", str(bad), "--index", str(tmp_path / "i")])
    assert result.exit_code == 1 and "invalid doc_id" in result.output


def test_min_confidence_errors_before_loading_anything(tmp_path, monkeypatch):
    runner = CliRunner()
    index_dir = str(tmp_path / "none")
    result = runner.invoke(main, ["ask", "q?", "--index", index_dir, "--min-confidence", "2"])
    assert result.exit_code == 2 and "0.0<=x<=1.0" in result.output
    monkeypatch.setenv("ARTICLE_QA_MIN_CONFIDENCE", "high")
    for command in (["ask", "q?", "--index", index_dir], ["serve", "--index", index_dir]):
        result = runner.invoke(main, command)
        assert result.exit_code == 1, result.output
        assert "ARTICLE_QA_MIN_CONFIDENCE='high' is not a number" in result.output
        assert "Traceback" not in result.output
