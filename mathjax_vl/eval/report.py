"""Write an evaluation as JSON (summary + every item), a Markdown table and a bar chart PNG."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from mathjax_vl.eval.scoring import ScoredItem


def markdown_table(summary: dict[str, Any]) -> str:
    lines = [f"## {summary['benchmark']} ({summary['num_items']} items)", ""]
    per_version = summary.get("per_version", {})
    if per_version:
        lines += ["| version | accuracy (%) | n |", "| --- | ---: | ---: |"]
        counts = summary.get("counts", {})
        for version, acc in per_version.items():
            lines.append(f"| {version} | {acc:.1f} | {counts.get(version, '')} |")
        lines.append("")
    scalars = {
        k: v
        for k, v in summary.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "num_items"
    }
    lines += ["| metric | value |", "| --- | ---: |"]
    for key, value in scalars.items():
        text = "inf" if isinstance(value, float) and math.isinf(value) else f"{value:.4g}"
        lines.append(f"| {key} | {text} |")
    for name in ("breakdown", "steps"):
        if isinstance(summary.get(name), dict):
            lines += ["", *breakdown_lines(summary[name], name)]
    rules = summary.get("extraction_rules", {})
    if rules:
        lines += ["", "Extraction rules used: " + ", ".join(f"{k} {v}" for k, v in rules.items())]
    return "\n".join(lines) + "\n"


def _is_cell(value: Any) -> bool:
    return isinstance(value, dict) and {"correct", "total"} <= set(value)


def breakdown_lines(table: dict[str, Any], title: str) -> list[str]:
    """Markdown tables for the official breakdown rows: one table per group of cells
    ({correct, total, accuracy}); accuracies in [0, 1] are shown in percent."""
    flat = {k: v for k, v in table.items() if _is_cell(v)}
    lines: list[str] = []
    if flat:
        lines += [f"### {title}", "", "| row | accuracy (%) | correct | total |"]
        lines.append("| --- | ---: | ---: | ---: |")
        for key, cell in flat.items():
            acc = cell.get("accuracy", 0.0)
            acc = 100.0 * acc
            lines.append(f"| {key} | {acc:.2f} | {cell['correct']} | {cell['total']} |")
        lines.append("")
    for key, value in table.items():
        if isinstance(value, dict) and not _is_cell(value):
            lines += breakdown_lines(value, f"{title} / {key}")
    return lines


def bar_chart(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_version = summary.get("per_version") or {"all": summary["accuracy"]}
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(per_version)), 3.2), dpi=100)
    names = list(per_version)
    values = [per_version[n] for n in names]
    ax.bar(range(len(names)), values, color="#4c72b0")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.replace("_", "\n") for n in names], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{summary['benchmark']}: accuracy per version")
    for x, v in enumerate(values):
        ax.text(x, v + 1, f"{v:.1f}", ha="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(items: list[ScoredItem], summary: dict[str, Any], out_dir: str | Path) -> dict:
    """Writes summary.json, items.jsonl, report.md, accuracy.png; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "summary": out / "summary.json",
        "items": out / "items.jsonl",
        "markdown": out / "report.md",
        "chart": out / "accuracy.png",
    }
    paths["summary"].write_text(json.dumps(_finite(summary), indent=2, sort_keys=True))
    with paths["items"].open("w") as f:
        for item in items:
            f.write(json.dumps(dataclasses.asdict(item), default=str) + "\n")
    paths["markdown"].write_text(markdown_table(summary))
    bar_chart(summary, paths["chart"])
    return {k: str(v) for k, v in paths.items()}


def _finite(value: Any) -> Any:
    """JSON has no inf: write it as the string 'inf' rather than an invalid token."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
