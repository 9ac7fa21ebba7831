"""Tests for eval.metrics, eval.squad and eval.gold.

The parity test holds the metrics to the official SQuAD 2.0 script's published
output on the bundled sample; the rest use small hand-computed cases.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from eval.gold import GoldFormatError, GoldQuestion, load_gold, question_type
from eval.metrics import (
    abstention_scores,
    answer_rank,
    calibration,
    citation_is_valid,
    exact_match,
    expected_calibration_error,
    f1,
    latency_percentiles,
    normalize_answer,
    percentile,
    quote_contains_answer,
    recall_at_k,
    reciprocal_rank,
    retrieval_scores,
    squad_scores,
)
from eval.squad import SquadFormatError, doc_id_from_title, import_squad, squad_split

SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLE_DIR = SHARED / "datasets" / "squad2-sample"
SAMPLE = SAMPLE_DIR / "squad2-dev-sample.json"
PREDICTIONS = SAMPLE_DIR / "bert-predictions.json"

# Printed by the official evaluate-v2.0.py on the sample (squad2-sample/README.md).
OFFICIAL_SCORES = {
    "exact": 76.8370607028754,
    "f1": 79.76284553235601,
    "total": 626,
    "HasAns_exact": 64.50511945392492,
    "HasAns_f1": 70.75611366298587,
    "HasAns_total": 293,
    "NoAns_exact": 87.68768768768768,
    "NoAns_f1": 87.68768768768768,
    "NoAns_total": 333,
}


@pytest.fixture(scope="module")
def sample() -> Path:
    if not SAMPLE.is_file() or not PREDICTIONS.is_file():
        pytest.skip(f"SQuAD sample not available at {SAMPLE_DIR}")
    return SAMPLE


@pytest.fixture(scope="module")
def imported(sample: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("squad-import")
    return import_squad(sample, out)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------- parity


def _raw_gold(path: Path) -> dict[str, list[str]]:
    # Built straight from the SQuAD JSON the way the official script reads it,
    # so parity does not depend on the importer.
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return {
        qa["id"]: [a["text"] for a in qa["answers"]]
        for article in data
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    }


def _assert_official(scores: dict) -> None:
    assert set(scores) == set(OFFICIAL_SCORES)
    for key, expected in OFFICIAL_SCORES.items():
        assert scores[key] == pytest.approx(expected, abs=1e-9, rel=0), key
        assert type(scores[key]) is type(expected), key


def test_parity_with_official_script(sample: Path) -> None:
    predictions = json.loads(PREDICTIONS.read_text(encoding="utf-8"))
    _assert_official(squad_scores(predictions, _raw_gold(sample)))


def test_parity_through_imported_gold(imported, sample: Path) -> None:
    predictions = json.loads(PREDICTIONS.read_text(encoding="utf-8"))
    gold = {q.id: list(q.answers) for q in load_gold(imported.gold_path)}
    _assert_official(squad_scores(predictions, gold))


# --------------------------------------------------------------------------- answer metrics


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Cat, the hat!", "cat hat"),
        ("an apple a day", "apple day"),
        ("theater Anthem", "theater anthem"),  # articles only as whole words
        ("the-end", "theend"),  # punctuation goes first, so "the" is no longer a word
        ("  A \t b\n ", "b"),
        ("Beyoncé's “hit”", "beyoncés “hit”"),  # only ASCII punctuation is removed
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_exact_match() -> None:
    assert exact_match("the Cat.", ["cat"]) == 1
    assert exact_match("cats", ["cat"]) == 0
    assert exact_match("dog", ["cat", "The dog"]) == 1


def test_f1_token_overlap() -> None:
    # pred {cat, sat}, gold {cat, on, mat}: P=1/2, R=1/3 -> F1=0.4
    assert f1("the cat sat", ["cat on mat"]) == pytest.approx(0.4)
    # Counter intersection: x:min(2,1) + y:min(1,2) = 2 of 3 each way.
    assert f1("x x y", ["x y y"]) == pytest.approx(2 / 3)
    # Maximum over golds: 0 against "dog", P=1 R=2/3 -> 0.8 against the second.
    assert f1("cat sat", ["dog", "cat sat down"]) == pytest.approx(0.8)
    assert f1("completely wrong", ["cat"]) == 0.0


def test_empty_golds_follow_the_official_rules() -> None:
    # Golds normalising to "" are dropped; none left means gold is [""].
    assert exact_match("", ["the", "!"]) == 1
    assert f1("", ["the", "!"]) == 1.0
    assert exact_match("", []) == 1
    assert f1("anything", []) == 0.0
    # "the" is dropped, leaving ["cat"]: an abstention now misses.
    assert exact_match("", ["the", "cat"]) == 0
    assert f1("cat", ["", "cat"]) == 1.0
    # A prediction that normalises to nothing counts as an abstention.
    assert f1("The.", []) == 1.0
    assert f1("", ["cat"]) == 0.0


def test_golds_must_be_a_list() -> None:
    with pytest.raises(TypeError, match="wrap it"):
        exact_match("cat", "cat")
    with pytest.raises(TypeError):
        f1("c", "cat")


def test_squad_scores_small_case() -> None:
    gold = {"q1": ["cat"], "q2": [], "q3": ["big dog"]}
    predictions = {"q1": "cat", "q2": "cat", "q3": "dog", "extra": "ignored"}
    scores = squad_scores(predictions, gold)
    # q3: P=1, R=1/2 -> F1=2/3.
    assert scores == pytest.approx(
        {
            "exact": 100 / 3,
            "f1": 100 * (1 + 0 + 2 / 3) / 3,
            "total": 3,
            "HasAns_exact": 50.0,
            "HasAns_f1": 100 * (1 + 2 / 3) / 2,
            "HasAns_total": 2,
            "NoAns_exact": 0.0,
            "NoAns_f1": 0.0,
            "NoAns_total": 1,
        }
    )


def test_squad_scores_omits_empty_groups_and_treats_missing_as_abstention() -> None:
    scores = squad_scores({}, {"q1": [], "q2": []})
    assert scores == {
        "exact": 100.0,
        "f1": 100.0,
        "total": 2,
        "NoAns_exact": 100.0,
        "NoAns_f1": 100.0,
        "NoAns_total": 2,
    }
    only_answerable = squad_scores({"q1": "x"}, {"q1": ["x"]})
    assert "NoAns_total" not in only_answerable and only_answerable["HasAns_total"] == 1
    with pytest.raises(ValueError, match="empty"):
        squad_scores({"q": "x"}, {})


# --------------------------------------------------------------------------- abstention


def test_abstention_precision_and_recall() -> None:
    gold = {"a": ["x"], "b": [], "c": [], "d": ["y"]}
    # Abstained on a (answerable: a false abstention) and b (right); answered c wrongly.
    result = abstention_scores({"a": "  ", "b": None, "c": "foo", "d": "y"}, gold)
    assert (result.abstained, result.unanswerable, result.correct_abstentions) == (2, 2, 1)
    assert result.precision == 0.5
    assert result.recall == 0.5
    # A missing prediction is an abstention; here it is the only one, and right.
    missing = abstention_scores({"a": "x", "d": "y", "c": "z"}, gold)
    assert (missing.precision, missing.recall) == (1.0, 0.5)


def test_abstention_undefined_cases_are_none() -> None:
    result = abstention_scores({"a": "x"}, {"a": ["x"]})
    assert result.precision is None and result.recall is None
    assert result.abstained == 0 and result.unanswerable == 0


# --------------------------------------------------------------------------- evidence and citations


def test_quote_contains_answer() -> None:
    quote = "In 1066, the Normans crossed the Channel."
    assert quote_contains_answer(quote, ["1066"])
    assert quote_contains_answer(quote, ["nothing", "The Normans!"])
    assert not quote_contains_answer(quote, ["106"])  # whole tokens only
    assert not quote_contains_answer(quote, ["Saxons"])
    assert not quote_contains_answer(quote, ["", "the"])  # empty golds never match
    assert not quote_contains_answer(quote, [])


def test_answer_rank_is_the_first_passage_holding_a_gold_answer() -> None:
    passages = ["The fleet sailed in 1065.", "In 1066, the Normans crossed.", "1066 again."]
    assert answer_rank(passages, ["1066"]) == 2
    assert answer_rank(passages, ["Saxons", "the normans"]) == 2
    assert answer_rank(passages, ["fleet sailed"]) == 1
    assert answer_rank(passages, ["106"]) == 0  # whole tokens, as for quotes
    assert answer_rank(passages, []) == 0
    assert answer_rank([], ["1066"]) == 0


TEXT = "Alpha beta. Troops numbered 12,000 in total. Gamma."
GOOD = {
    "span": "12,000",
    "start": 28,
    "end": 34,
    "quote": "Troops numbered 12,000 in total.",
    "quote_start": 12,
    "quote_end": 44,
}


def test_citation_valid() -> None:
    assert TEXT[28:34] == "12,000" and TEXT[12:44] == GOOD["quote"]
    assert citation_is_valid(TEXT, GOOD)
    # The span may be the whole quote.
    whole = dict(GOOD, span=GOOD["quote"], start=12, end=44)
    assert citation_is_valid(TEXT, whole)


@pytest.mark.parametrize(
    "change",
    [
        {"span": "12,00"},  # span text differs from text[start:end]
        {"start": 29},  # offsets off by one
        {"quote": "Troops numbered 12,000 in total"},
        {"quote_start": 29, "quote": TEXT[29:44]},  # span starts before the quote
        {"quote_end": 33, "quote": TEXT[12:33]},  # span ends after the quote
        {"start": 28, "end": 28, "span": ""},  # empty span
        {"quote_start": -40, "quote": TEXT[-40:44]},  # negative offsets slice from the end
        {"end": 34.0},  # not an int
        {"start": True},  # bool is not an offset
        {"quote_end": 400},  # past the end of the text
    ],
)
def test_citation_invalid(change: dict) -> None:
    assert not citation_is_valid(TEXT, dict(GOOD, **change))


def test_citation_missing_key_is_invalid() -> None:
    broken = dict(GOOD)
    del broken["quote_start"]
    assert not citation_is_valid(TEXT, broken)


# --------------------------------------------------------------------------- retrieval


def test_recall_at_k_counts_distinct_documents() -> None:
    ranked = ["d1", "d1", "d2", "d3"]  # two passages of d1
    assert recall_at_k(ranked, {"d2", "d4"}, 2) == 0.5
    assert recall_at_k(ranked, {"d2", "d4"}, 1) == 0.0
    assert recall_at_k(ranked, {"d1", "d3"}, 10) == 1.0
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(ranked, {"d1"}, 0)
    with pytest.raises(ValueError, match="skip"):
        recall_at_k(ranked, set(), 5)


def test_reciprocal_rank() -> None:
    assert reciprocal_rank(["d1", "d1", "d2"], {"d2"}) == 0.5
    assert reciprocal_rank(["d3", "d2", "d1"], {"d1", "d2"}) == 0.5
    assert reciprocal_rank(["d1"], {"d9"}) == 0.0


def test_retrieval_scores_skip_unanswerable() -> None:
    runs = [
        (["a", "b", "c"], {"b"}),  # rank 2
        (["x", "y"], {"z"}),  # miss
        (["q"], set()),  # unanswerable: skipped
    ]
    scores = retrieval_scores(runs, ks=(1, 2))
    assert scores == {"recall@1": 0.0, "recall@2": 0.5, "mrr": 0.25, "questions": 2}
    with pytest.raises(ValueError):
        retrieval_scores([(["a"], set())])


# --------------------------------------------------------------------------- calibration


def test_calibration_hand_computed() -> None:
    pairs = [(0.95, True), (0.85, False), (0.05, False), (0.3, True), (1.0, True)]
    result = calibration(pairs, n_bins=10)
    assert result.total == 5 and len(result.bins) == 10
    by_lo = {round(b.lo, 10): b for b in result.bins}
    # 1.0 lands in the last (closed) bin; 0.3 sits on an edge and lands in [0.3, 0.4).
    assert by_lo[0.9].count == 2 and by_lo[0.9].mean_confidence == pytest.approx(0.975)
    assert by_lo[0.9].accuracy == 1.0
    assert by_lo[0.3].count == 1 and by_lo[0.2].count == 0
    assert by_lo[0.2].mean_confidence is None and by_lo[0.2].accuracy is None
    # (2*0.025 + 0.85 + 0.05 + 0.7) / 5
    assert result.ece == pytest.approx(0.33)
    assert expected_calibration_error(pairs) == pytest.approx(0.33)
    assert result.bins[0].lo == 0.0 and result.bins[-1].hi == 1.0


def test_calibration_perfect_and_errors() -> None:
    assert expected_calibration_error([(0.5, 1), (0.5, 0)], n_bins=1) == 0.0
    assert expected_calibration_error([(0.8, 0.8)]) == pytest.approx(0.0)  # graded correctness
    with pytest.raises(ValueError, match="outside"):
        calibration([(1.2, True)])
    with pytest.raises(ValueError, match="outside"):
        calibration([(float("nan"), True)])
    with pytest.raises(ValueError, match="at least one"):
        calibration([])


# --------------------------------------------------------------------------- latency


def test_percentile_hand_computed() -> None:
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([1, 2, 3, 4], 95) == pytest.approx(3.85)  # position 2.85
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_latency_percentiles_match_numpy() -> None:
    rng = random.Random(7)
    for n in (1, 2, 3, 10, 101, 1000):
        values = [rng.lognormvariate(2.0, 1.0) for _ in range(n)]
        result = latency_percentiles(values, (50, 95, 99, 99.9))
        assert list(result) == ["p50", "p95", "p99", "p99.9"]
        expected = np.percentile(values, [50, 95, 99, 99.9])
        assert list(result.values()) == pytest.approx(list(expected), rel=1e-12, abs=1e-12)


# --------------------------------------------------------------------------- SQuAD import


def test_import_sample(imported) -> None:
    assert imported.version == "v2.0"
    assert (imported.documents, imported.questions) == (2, 626)
    assert (imported.answerable, imported.unanswerable) == (293, 333)
    assert imported.mismatches == ()

    corpus = _read_jsonl(imported.corpus_path)
    assert [d["doc_id"] for d in corpus] == ["Normans", "Computational_complexity_theory"]
    assert set(corpus[0]) == {"doc_id", "title", "text", "source", "url", "published"}
    texts = {d["doc_id"]: d["text"] for d in corpus}

    gold = _read_jsonl(imported.gold_path)
    assert len(gold) == 626 and sum(1 for q in gold if not q["answers"]) == 333
    assert [len(_read_jsonl(p)) for p in imported.split_paths] == [325, 301]
    assert all((q["type"] == "unanswerable") == (not q["answers"]) for q in gold)
    assert all(bool(q["doc_ids"]) == bool(q["answers"]) for q in gold)

    offsets = _read_jsonl(imported.offsets_path)
    assert len(offsets) == imported.answer_offsets > 293
    for record in offsets:
        assert texts[record["doc_id"]][record["start"] : record["end"]] == record["answer"]
    # Every gold answer of every answerable question has at least one offset.
    located = {(r["id"], r["answer"]) for r in offsets}
    assert {(q["id"], a) for q in gold for a in q["answers"]} == located


def test_import_keeps_contexts_verbatim(imported, sample: Path) -> None:
    data = json.loads(sample.read_text(encoding="utf-8"))["data"]
    corpus = _read_jsonl(imported.corpus_path)
    for article, document in zip(data, corpus, strict=True):
        contexts = [p["context"] for p in article["paragraphs"]]
        assert document["text"] == "\n\n".join(contexts)


def test_imported_gold_loads(imported) -> None:
    questions = load_gold(imported.gold_path)
    assert len(questions) == 626
    first = questions[0]
    assert first == GoldQuestion(
        id="56ddde6b9a695914005b9628",
        question="In what country is Normandy located?",
        answers=("France",),
        doc_ids=("Normans",),
        type="place",
    )


def _write_json(path: Path, payload: object) -> Path:
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def test_import_synthetic_v11(tmp_path: Path) -> None:
    p1 = "Rollo founded Normandy in 911."
    p2 = "The duchy grew. William conquered England in 1066."
    payload = {
        "version": "1.1",
        "data": [
            {
                "title": "Beyoncé_Knowles",
                "paragraphs": [
                    {
                        "context": p1,
                        "qas": [
                            {
                                "id": "q1",
                                "question": "Who founded Normandy?",
                                "answers": [
                                    {"text": "Rollo", "answer_start": 0},
                                    {"text": "Rollo", "answer_start": 0},
                                ],
                            },
                        ],
                    },
                    {
                        "context": p2,
                        "qas": [
                            {
                                "id": "q2",
                                "question": "In what year did William conquer England?",
                                "answers": [
                                    {"text": "1066", "answer_start": 45},
                                    # wrong start: repaired to the real occurrence
                                    {"text": "England", "answer_start": 3},
                                    # not in the paragraph at all: no offset
                                    {"text": "Hastings", "answer_start": 10},
                                ],
                            },
                        ],
                    },
                ],
            },
            {
                "title": "Beyoncé Knowles",  # sanitises to the same id: must be made unique
                "paragraphs": [
                    {
                        "context": "How many? 3.",
                        "qas": [
                            {
                                "id": "q3",
                                "question": "How many were there?",
                                "answers": [{"text": "3", "answer_start": 10}],
                            },
                        ],
                    }
                ],
            },
        ],
    }
    summary = import_squad(_write_json(tmp_path / "tiny.json", payload), tmp_path / "out")
    assert summary.version == "1.1"
    assert (summary.documents, summary.questions, summary.unanswerable) == (2, 3, 0)

    corpus = _read_jsonl(summary.corpus_path)
    assert [d["doc_id"] for d in corpus] == ["Beyonce_Knowles", "Beyonce_Knowles-2"]
    assert corpus[0]["text"] == p1 + "\n\n" + p2
    assert corpus[0]["title"] == "Beyoncé Knowles"

    text = corpus[0]["text"]
    england = text.index("England")
    assert [(m.id, m.answer, m.repaired_start) for m in summary.mismatches] == [
        ("q2", "England", england),
        ("q2", "Hastings", None),
    ]
    offsets = _read_jsonl(summary.offsets_path)
    # Duplicate "Rollo" annotations collapse to one; "Hastings" has none.
    assert [(r["id"], r["answer"], r["start"]) for r in offsets] == [
        ("q1", "Rollo", 0),
        ("q2", "1066", len(p1) + 2 + 45),
        ("q2", "England", england),
        ("q3", "3", 10),
    ]
    texts = {d["doc_id"]: d["text"] for d in corpus}
    for r in offsets:
        assert texts[r["doc_id"]][r["start"] : r["end"]] == r["answer"]

    gold = {q.id: q for q in load_gold(summary.gold_path)}
    assert gold["q1"].answers == ("Rollo",)
    assert gold["q2"].answers == ("1066", "England", "Hastings")
    assert gold["q3"].doc_ids == ("Beyonce_Knowles-2",)
    assert [gold[q].type for q in ("q1", "q2", "q3")] == ["person", "date", "count"]

    # The two halves partition the gold set the way squad_split says, order kept.
    dev, test = ([q["id"] for q in _read_jsonl(path)] for path in summary.split_paths)
    assert sorted(dev + test) == sorted(gold) and not set(dev) & set(test)
    assert all(squad_split(q) == "dev" for q in dev) and all(squad_split(q) == "test" for q in test)
    assert dev == [q for q in gold if q in dev]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("this is not json", "not JSON"),
        ('{"id": "q1"}\n{"id": "q2"}\n', "JSONL"),
        ("[1, 2, 3]", "'data' list"),
        ('{"version": "v2.0", "articles": []}', "'data' list"),
        ('{"data": []}', "empty"),
        (
            '{"data": [{"title": "T", "paragraphs": [{"qas": []}]}]}',
            r"data\[0\]\.paragraphs\[0\]\.context",
        ),
        (
            (
                '{"data": [{"title": "T", "paragraphs": [{"context": "c", "qas": [{"id": "q", '
                '"question": "?", "answers": [{"text": "c", "answer_start": "0"}]}]}]}]}'
            ),
            r"answer_start should be int",
        ),
    ],
)
def test_import_rejects_non_squad(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "input.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SquadFormatError, match=message) as info:
        import_squad(path, tmp_path / "out")
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing written on failure


def test_doc_id_from_title() -> None:
    taken: set[str] = set()
    assert doc_id_from_title("Normans", taken) == "Normans"
    assert doc_id_from_title("Normans", taken) == "Normans-2"
    assert doc_id_from_title("Ünïcode / slash?", taken) == "Unicode_slash"
    assert doc_id_from_title("日本", taken) == "article"
    long_id = doc_id_from_title("x" * 300, taken)
    assert long_id == "x" * 128
    assert doc_id_from_title("x" * 300, taken) == "x" * 126 + "-2"


def test_question_type() -> None:
    assert question_type("How long did the siege last?") == "duration"
    assert question_type("How many troops were reported?") == "count"
    assert question_type("Why did they leave?") == "why"
    assert question_type("In what year was it founded?") == "date"
    assert question_type("Who led the Normans?") == "person"
    assert question_type("Which agency reported it?") == "organisation"
    assert question_type("Where is Normandy?") == "place"
    assert question_type("What religion were the Normans?") == "noun_phrase"
    # The earliest cue wins.
    assert question_type("What company did he join when he left?") == "organisation"
    assert question_type("Who?", answerable=False) == "unanswerable"


# --------------------------------------------------------------------------- gold loading

VALID = {"id": "q1", "question": "How many?", "answers": ["3"], "doc_ids": ["d1"], "type": "count"}


def _gold_file(tmp_path: Path, *lines: object) -> Path:
    path = tmp_path / "gold.jsonl"
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n",
        encoding="utf-8",
    )
    return path


def test_load_gold_reads_records(tmp_path: Path) -> None:
    path = _gold_file(
        tmp_path,
        VALID,
        "",
        {"id": "q2", "question": "Who won?", "answers": ["Ann", "Ann", "ann"]},
        {"id": "q3", "question": "Who?", "answers": [], "doc_ids": [], "type": "unanswerable"},
        {"id": "q4", "question": "How many?", "answers": ["3", "4"], "conflict": True},
    )
    questions = load_gold(path)
    assert [q.id for q in questions] == ["q1", "q2", "q3", "q4"]
    assert questions[0] == GoldQuestion("q1", "How many?", ("3",), ("d1",), "count")
    # "conflict" is optional: the articles disagree only where a question says so.
    assert questions[3].conflict and not any(q.conflict for q in questions[:3])
    # Exact duplicates collapse; a type left out is inferred; doc_ids default to none.
    assert questions[1].answers == ("Ann", "ann")
    assert (questions[1].type, questions[1].doc_ids) == ("person", ())
    assert not questions[2].answerable and questions[0].answerable


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"id": "q2", "question": "x", ', "invalid JSON"),
        ('["q2"]', "expected a JSON object"),
        ({"id": "q2", "answers": []}, "missing required field 'question'"),
        ({"id": "", "question": "x", "answers": []}, "'id' must be a non-empty string"),
        ({"id": "q2", "question": "x", "answers": "3"}, "'answers' must be a list"),
        ({"id": "q2", "question": "x", "answers": [3]}, r"'answers'\[0\]"),
        ({"id": "q2", "question": "x", "answers": ["3"], "doc_ids": ["bad id"]}, "doc_id"),
        ({"id": "q2", "question": "x", "answers": ["3"], "type": "number"}, "unknown type"),
        ({"id": "q2", "question": "x", "answers": [], "type": "count"}, "unanswerable"),
        ({"id": "q2", "question": "x", "answers": ["3"], "type": "unanswerable"}, "unanswerable"),
        ({"id": "q2", "question": "x", "answers": ["3"], "conflict": "yes"}, "true or false"),
        ({"id": "q2", "question": "x", "answers": [], "conflict": True}, "only an answerable"),
        (VALID, "duplicate id 'q1' \\(first on line 1\\)"),
    ],
)
def test_load_gold_errors_name_the_line(tmp_path: Path, bad: object, message: str) -> None:
    path = _gold_file(tmp_path, VALID, "", bad)  # line 2 is blank, so the bad line is 3
    with pytest.raises(GoldFormatError, match=message) as info:
        load_gold(path)
    assert info.value.line == 3
    assert str(info.value).startswith(f"{path}:3: ")


def test_load_gold_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(GoldFormatError, match="empty") as info:
        load_gold(path)
    assert str(path) in str(info.value)


def test_load_gold_bad_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "gold.jsonl"
    path.write_bytes(json.dumps(VALID).encode() + b"\n\xff\xfe\n")
    with pytest.raises(GoldFormatError, match=r":2: not valid UTF-8"):
        load_gold(path)
