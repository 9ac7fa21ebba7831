"""Reports of an evaluation run: the terminal table, report.json, report.md and charts.

Rates are fractions in [0, 1], latencies milliseconds; "-" marks a metric that is
undefined on the gold set (e.g. abstention recall without unanswerable questions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from eval.baselines import SYSTEM
from eval.harness import STAGES, EvalRun
from eval.metrics import paired_difference

# (metric key, column header, format) for the summary table.
COLUMNS = (
    ("exact", "EM", "{:.3f}"),
    ("f1", "F1", "{:.3f}"),
    ("has_ans_f1", "HasAns F1", "{:.3f}"),
    (("abstention_precision", "abstention_recall"), "abst P/R", "{:.2f}"),
    ("evidence_accuracy", "evid acc", "{:.3f}"),
    ("citation_validity", "cit valid", "{:.3f}"),
    (("conflict_precision", "conflict_recall"), "confl P/R", "{:.2f}"),
    ("recall@5", "R@5", "{:.3f}"),
    ("mrr", "MRR", "{:.3f}"),
    (("answer_recall@1", "answer_recall@5"), "ans R@1/5", "{:.2f}"),
    ("ece", "ECE", "{:.3f}"),
    ("latency_p50_ms", "p50 ms", "{:.1f}"),
    ("latency_p95_ms", "p95 ms", "{:.1f}"),
)


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """Where a report was written."""

    results: Path
    json: Path
    markdown: Path
    charts: tuple[Path, ...]
    report: dict  # what report.json holds


def _fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _cells(overall: dict) -> list[str]:
    cells = []
    for key, _, pattern in COLUMNS:
        if isinstance(key, tuple):
            cells.append("/".join(_fmt(overall.get(k), pattern) for k in key))
        else:
            cells.append(_fmt(overall.get(key), pattern))
    return cells


def summary_rows(run: EvalRun) -> tuple[list[str], list[list[str]]]:
    """Header and one row per system of the summary table."""
    header = ["system", "n", *(title for _, title, _ in COLUMNS)]
    rows = [[s, str(run.metrics[s]["overall"]["questions"]), *_cells(run.metrics[s]["overall"])]
            for s in run.systems]
    return header, rows


def format_table(run: EvalRun) -> str:
    """The summary table as aligned plain text, systems as rows."""
    header, rows = summary_rows(run)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for j, row in enumerate([header, *rows]):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _types(run: EvalRun) -> list[str]:
    seen: dict[str, None] = {}
    for s in run.systems:
        seen.update(dict.fromkeys(run.metrics[s]["by_type"]))
    return list(seen)


def type_f1_rows(run: EvalRun) -> tuple[list[str], list[list[str]]]:
    """Header (type, n, one column per system) and one F1 row per question type."""
    header = ["type", "n", *run.systems]
    rows = []
    for t in _types(run):
        by_type = [run.metrics[s]["by_type"].get(t) for s in run.systems]
        n = next(b["questions"] for b in by_type if b)
        rows.append([t, str(n), *(_fmt(b["f1"] if b else None, "{:.3f}") for b in by_type)])
    return header, rows


def reliability_rows(run: EvalRun, system: str) -> tuple[list[str], list[list[str]]]:
    header = ["confidence", "n", "mean confidence", "accuracy"]
    rows = [[f"{b['lo']:.1f}-{b['hi']:.1f}", str(b["count"]),
             _fmt(b["mean_confidence"], "{:.3f}"), _fmt(b["accuracy"], "{:.3f}")]
            for b in run.metrics[system]["reliability"]]
    return header, rows


def comparisons(run: EvalRun, metric: str = "f1") -> dict[str, dict]:
    """The main system's per-question `metric` against each other system's on the same
    questions: {baseline: paired_difference(...)}."""
    main = _main_system(run)
    mine = {r.id: getattr(r, metric) for r in run.for_system(main)}
    out = {}
    for other in run.systems:
        if other == main:
            continue
        theirs = {r.id: getattr(r, metric) for r in run.for_system(other)}
        ids = [i for i in mine if i in theirs]
        if ids:
            out[other] = paired_difference([mine[i] for i in ids], [theirs[i] for i in ids])
    return out


def comparison_lines(report: dict) -> list[str]:
    """One plain-text line per baseline of a report's comparisons: the F1 difference, its
    interval, who wins where."""
    main = report["comparisons"]["system"]
    return [f"{main} - {other}: F1 {c['difference']:+.3f} ({c['level']:.0%} CI "
            f"{c['low']:+.3f} to {c['high']:+.3f}; {c['differ']} of {c['questions']} "
            f"questions differ, {c['better']} better, {c['worse']} worse)"
            for other, c in report["comparisons"]["against"].items()]


def comparison_rows(against: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Header and one row per baseline of `comparisons`' result, for report.md."""
    header = ["baseline", "F1 difference", "95% interval", "questions differing",
              "better / worse"]
    rows = [[other, f"{c['difference']:+.3f}", f"{c['low']:+.3f} to {c['high']:+.3f}",
             f"{c['differ']} of {c['questions']}", f"{c['better']} / {c['worse']}"]
            for other, c in against.items()]
    return header, rows


# --------------------------------------------------------------------------- charts


def _plot_type_f1(run: EvalRun, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = _types(run)
    n_sys = len(run.systems)
    width = 0.8 / n_sys
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(types) + 3), 4.0))
    for i, system in enumerate(run.systems):
        values = [(run.metrics[system]["by_type"].get(t) or {}).get("f1") or 0.0 for t in types]
        xs = [x + (i - (n_sys - 1) / 2) * width for x in range(len(types))]
        ax.bar(xs, values, width, label=system)
    ax.set_xticks(range(len(types)), types, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.set_title("F1 by question type")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_reliability(run: EvalRun, system: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = [b for b in run.metrics[system]["reliability"] if b["count"]]
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    if bins:
        centres = [(b["lo"] + b["hi"]) / 2 for b in bins]
        ax.bar(centres, [b["accuracy"] for b in bins], width=0.09, alpha=0.7, label="accuracy")
        ax.plot([b["mean_confidence"] for b in bins], [b["accuracy"] for b in bins], "o-",
                color="black", label="mean confidence vs accuracy")
        for c, b in zip(centres, bins):
            ax.annotate(str(b["count"]), (c, b["accuracy"]), textcoords="offset points",
                        xytext=(0, 4), ha="center", fontsize="x-small")
    ece = run.metrics[system]["overall"]["ece"]
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("confidence of the top answer")
    ax.set_ylabel("share correct (F1 >= 0.5)")
    ax.set_title(f"Reliability: {system} (ECE {_fmt(ece, '{:.3f}')})")
    ax.legend(fontsize="x-small", loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- files


def _main_system(run: EvalRun) -> str:
    return SYSTEM if SYSTEM in run.systems else run.systems[0]


def report_dict(run: EvalRun, dataset: str | Path | None = None, index: str | None = None
                ) -> dict:
    """Everything report.json holds: metadata, and per system overall/by_type/reliability."""
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "started_at": run.started_at,
        "duration_s": run.duration_s,
        "dataset": str(dataset) if dataset is not None else None,
        "index": index,
        "questions": run.questions,
        "systems": list(run.systems),
        "units": "rates are fractions in [0, 1]; latencies are milliseconds",
        **({"meta": run.meta} if run.meta else {}),
        "metrics": run.metrics,
        # Per-question F1 of the main system minus each baseline's, with a paired
        # bootstrap interval: whether the gold set can tell them apart.
        "comparisons": {"metric": "f1", "system": _main_system(run),
                        "against": comparisons(run)},
    }


def _cut_line(cut: dict) -> str:
    """The confidence cut the span readers answered at (`run.meta["answer_threshold"]`)."""
    why = ("the reader model's own cut" if cut["value"] == cut["fitted"]
           else f"--min-confidence; the reader model's own cut is {cut['fitted']:.3f}")
    return f"- answers at confidence >= {cut['value']:.3f} ({why})"


def markdown(run: EvalRun, report: dict, charts: dict[str, Path]) -> str:
    main = _main_system(run)
    cut = run.meta.get("answer_threshold")  # in-process runs only
    parts = [
        "# article-qa evaluation",
        "",
        f"- dataset: `{report['dataset']}` ({run.questions} questions)",
        f"- index: `{report['index']}`",
        f"- run: {run.started_at}, {run.duration_s:.1f} s",
        *([_cut_line(cut)] if cut else []),
        "- rates are fractions in [0, 1]; latencies in ms; `-` = undefined on this set",
        "",
        "## Summary",
        "",
        _markdown_table(*summary_rows(run)),
        "",
    ]
    if len(run.systems) > 1:
        parts += [
            f"## `{main}` against the others",
            "",
            ("Per-question F1 of `" + main + "` minus the other system's, averaged, with a "
             "95% paired bootstrap interval (2,000 resamples of the questions). An interval "
             "that contains 0 means this gold set cannot tell the two apart."),
            "",
            _markdown_table(*comparison_rows(report["comparisons"]["against"])),
            "",
        ]
    parts += [
        "## F1 by question type",
        "",
        _markdown_table(*type_f1_rows(run)),
        "",
    ]
    if "type_f1" in charts:
        parts += [f"![F1 by question type]({charts['type_f1'].name})", ""]
    parts += [
        f"## Calibration of `{main}`",
        "",
        ("Over the questions it answered: the top answer's confidence against whether it "
         "is correct (F1 >= 0.5 with a gold answer)."),
        "",
        _markdown_table(*reliability_rows(run, main)),
        "",
    ]
    if "reliability" in charts:
        parts += [f"![Reliability diagram]({charts['reliability'].name})", ""]
    parts += [
        "## Latency by stage",
        "",
        ("Median milliseconds per question of each stage the system reports in "
         "`timings_ms` (answers served from the answer cache left out), and of the whole "
         "request as the harness timed it."),
        "",
        _markdown_table(*stage_rows(run)),
        "",
    ]
    return "\n".join(parts)


def stage_rows(run: EvalRun) -> tuple[list[str], list[list[str]]]:
    """One row per system: p50 of each answer stage, and of the whole request."""
    header = ["system", *(f"{stage} p50" for stage in STAGES), "total p50"]
    rows = [[s, *(_fmt(run.metrics[s]["overall"].get(f"{stage}_p50_ms"), "{:.1f}")
                  for stage in STAGES),
             _fmt(run.metrics[s]["overall"].get("latency_p50_ms"), "{:.1f}")]
            for s in run.systems]
    return header, rows


def write_report(run: EvalRun, out_dir: str | Path, dataset: str | Path | None = None,
                 index: str | None = None) -> ReportFiles:
    """Write results.jsonl, report.json, report.md and the PNG charts into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = run.write_jsonl(out / "results.jsonl")
    report = report_dict(run, dataset, index)
    json_path = out / "report.json"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                         encoding="utf-8")
    charts = {"type_f1": _plot_type_f1(run, out / "f1_by_type.png"),
              "reliability": _plot_reliability(run, _main_system(run), out / "reliability.png")}
    md_path = out / "report.md"
    md_path.write_text(markdown(run, report, charts), encoding="utf-8")
    return ReportFiles(results, json_path, md_path, tuple(charts.values()), report)
