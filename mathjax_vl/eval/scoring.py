"""Score model responses to benchmark problems and aggregate them per benchmark.

A scored item keeps the response, the extracted answer and the extraction rule, so every number
in a report can be traced back to the text that produced it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mathjax_vl.data.records import EvalProblem
from mathjax_vl.eval import mathverse, metrics
from mathjax_vl.eval.extraction import extract_answer
from mathjax_vl.eval.matching import answers_match, mathvista_normalize
from mathjax_vl.eval.mathv import mathv_extract, mathv_judge, mathv_report

BENCHMARKS = ("mathverse", "mathvista", "wemath", "mathv", "generic")
MATHVISTA_NO_ANSWER = "N/A"


@dataclasses.dataclass(frozen=True)
class ScoredItem:
    problem_id: str
    version: str
    answer: str
    response: str
    extracted: str | None
    rule: str
    correct: bool
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def score_item(
    problem: EvalProblem,
    response: str,
    benchmark: str = "generic",
    extraction: str | None = None,
) -> ScoredItem:
    """Extract the answer from `response` and judge it against `problem.answer`.

    `extraction`: a step-1 answer made elsewhere (MathVerse's model-based extractor); it is
    judged by rules instead of the rule-based extraction."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark {benchmark!r} is not one of {BENCHMARKS}")
    if extraction is not None or benchmark == "mathverse":
        # MathVerse's two steps: extraction (rules unless given), then judging by rules.
        rule = "model" if extraction is not None else "rules"
        if extraction is None:
            extraction = mathverse.rule_extract(problem, response)
        return ScoredItem(
            problem_id=problem.problem_id,
            version=problem.version,
            answer=problem.answer,
            response=response,
            extracted=extraction,
            rule=rule,
            correct=mathverse.judge(problem, extraction),
            metadata=dict(problem.metadata),
        )
    if benchmark == "mathv":
        # MATH-V's official judge is rule-based; we apply its rules (eval/mathv.py).
        answer = mathv_extract(response)
        return ScoredItem(
            problem_id=problem.problem_id,
            version=problem.version,
            answer=problem.answer,
            response=response,
            extracted=answer,
            rule="mathv",
            correct=mathv_judge(answer, problem.answer, problem.choices),
            metadata=dict(problem.metadata),
        )
    extracted = extract_answer(response, problem.choices, problem.answer_type)
    if benchmark == "mathvista":
        # MathVista compares normalised strings exactly; multi-choice golds are option texts.
        question_type = problem.metadata.get("question_type", "free_form")
        text = extracted.text
        if text is None and question_type == "multi_choice":
            # The official pipeline maps a response that names no option to the option nearest
            # the extraction GPT writes for it ("N/A"); the published numbers include that.
            text = MATHVISTA_NO_ANSWER
        normalised = mathvista_normalize(
            text,
            question_type=question_type,
            answer_type=problem.answer_type,
            choices=problem.choices,
            precision=problem.precision,
        )
        correct = normalised is not None and normalised == problem.answer
    else:
        correct = answers_match(
            extracted.text,
            problem.answer,
            problem.answer_type,
            choices=problem.choices,
            precision=problem.precision,
        )
    return ScoredItem(
        problem_id=problem.problem_id,
        version=problem.version,
        answer=problem.answer,
        response=response,
        extracted=extracted.text,
        rule=extracted.rule,
        correct=bool(correct),
        metadata=dict(problem.metadata),
    )


def score_all(
    problems: Sequence[EvalProblem],
    responses: Sequence[str],
    benchmark: str = "generic",
    extractions: Sequence[str] | None = None,
) -> list[ScoredItem]:
    """Score every response; `extractions` (one per response) replace rule-based step 1."""
    if len(problems) != len(responses):
        raise ValueError(f"{len(problems)} problems but {len(responses)} responses")
    if extractions is not None and len(extractions) != len(responses):
        raise ValueError(f"{len(responses)} responses but {len(extractions)} extractions")
    given = extractions if extractions is not None else [None] * len(responses)
    return [score_item(p, r, benchmark, e) for p, r, e in zip(problems, responses, given)]


def summarize(items: Iterable[ScoredItem], benchmark: str = "generic") -> dict[str, Any]:
    """Benchmark-level numbers as a JSON-ready dict (accuracies in percent)."""
    items = list(items)
    summary: dict[str, Any] = {
        "benchmark": benchmark,
        "num_items": len(items),
        "accuracy": 100.0 * metrics.accuracy([i.correct for i in items]),
        "extraction_rules": _count(i.rule for i in items),
    }
    if benchmark == "mathverse":
        report = metrics.mathverse_report((i.version, i.correct) for i in items)
        summary.update(
            per_version={k: 100.0 * v for k, v in report.per_version.items()},
            counts=report.counts,
            overall=100.0 * report.overall,
            text=100.0 * report.text,
            vision=100.0 * report.vision,
            gap=100.0 * report.gap,
            abs_skewness=report.abs_skewness,
            coefficient_of_variation=report.coefficient_of_variation,
        )
        summary["breakdown"] = metrics.mathverse_breakdown(
            (
                i.version,
                str(i.metadata.get("subject", "")),
                str(i.metadata.get("subfield", "")),
                i.correct,
            )
            for i in items
        )
    elif benchmark == "mathvista":
        summary["breakdown"] = metrics.mathvista_breakdown((i.metadata, i.correct) for i in items)
    elif benchmark == "wemath":
        rows = [
            {
                "ID": i.metadata.get("ID", i.problem_id),
                "key": i.metadata.get("key", ""),
                "correct": i.correct,
            }
            for i in items
        ]
        report = metrics.wemath_report(metrics.wemath_problems_from_rows(rows))
        summary.update({k: v for k, v in dataclasses.asdict(report).items()})
        for row, item in zip(rows, items):
            row["knowledge concept"] = item.metadata.get("knowledge concept")
        summary["steps"] = metrics.wemath_step_report(rows)
    elif benchmark == "mathv":
        summary["breakdown"] = mathv_report(
            [(i.metadata.get("subject", ""), i.metadata.get("level", 0), i.correct) for i in items]
        )
    else:
        by_version: dict[str, list[bool]] = {}
        for item in items:
            by_version.setdefault(item.version or "all", []).append(item.correct)
        summary["per_version"] = {k: 100.0 * metrics.accuracy(v) for k, v in by_version.items()}
    return summary


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts
