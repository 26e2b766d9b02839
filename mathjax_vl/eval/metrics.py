"""Benchmark metrics: MathVerse versions and modality gap, We-Math's four-dimensional metrics.

Inputs are per-problem correctness flags produced by `mathjax_vl.eval.scoring`; everything here is
plain counting so it can be checked against hand-made sets with known answers.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

# MathVerse's five scored versions (overall = their mean) and the separately reported text-only.
MATHVERSE_VERSIONS = (
    "text_dominant",
    "text_lite",
    "vision_intensive",
    "vision_dominant",
    "vision_only",
)
MATHVERSE_TEXT_ONLY = "text_only"


def canonical_version(name: str) -> str:
    """'Text Dominant', 'text-dominant', 'TEXT_DOMINANT' -> 'text_dominant'."""
    return "_".join(name.strip().lower().replace("-", " ").split())


def accuracy(flags: Sequence[bool]) -> float:
    if not flags:
        raise ValueError("accuracy of an empty set of problems is undefined")
    return sum(bool(f) for f in flags) / len(flags)


@dataclasses.dataclass(frozen=True)
class MathVerseReport:
    per_version: dict[str, float]  # accuracy in [0, 1] per canonical version present
    counts: dict[str, int]
    overall: float  # mean over the five scored versions
    text: float  # mean of text_dominant and text_lite (Math-PUMA Fig. 4)
    vision: float  # mean of vision_intensive, vision_dominant, vision_only
    gap: float  # (text_dominant - vision_only) / vision_only (Math-PUMA Table 3); inf if VO = 0
    abs_skewness: float  # |Fisher-Pearson skewness| of the five version accuracies
    coefficient_of_variation: float  # population std / mean of the five version accuracies


def skewness(values: Sequence[float]) -> float:
    """Fisher-Pearson coefficient g1 = m3 / m2^1.5 (population moments); 0 for constant values."""
    n = len(values)
    mean = sum(values) / n
    m2 = sum((v - mean) ** 2 for v in values) / n
    m3 = sum((v - mean) ** 3 for v in values) / n
    return 0.0 if m2 == 0 else m3 / m2**1.5


def mathverse_report(results: Iterable[tuple[str, bool]]) -> MathVerseReport:
    """Aggregate (version, correct) pairs. All five scored versions must be present."""
    by_version: dict[str, list[bool]] = defaultdict(list)
    for version, correct in results:
        by_version[canonical_version(version)].append(bool(correct))
    unknown = set(by_version) - set(MATHVERSE_VERSIONS) - {MATHVERSE_TEXT_ONLY}
    if unknown:
        raise ValueError(
            f"unknown MathVerse versions {sorted(unknown)}; expected {MATHVERSE_VERSIONS} "
            f"or {MATHVERSE_TEXT_ONLY!r}"
        )
    missing = [v for v in MATHVERSE_VERSIONS if v not in by_version]
    if missing:
        raise ValueError(f"MathVerse results lack versions {missing}; overall needs all five")
    per_version = {v: accuracy(flags) for v, flags in by_version.items()}
    scored = [per_version[v] for v in MATHVERSE_VERSIONS]
    mean = sum(scored) / len(scored)
    std = math.sqrt(sum((s - mean) ** 2 for s in scored) / len(scored))
    vision_only = per_version["vision_only"]
    gap = (per_version["text_dominant"] - vision_only) / vision_only if vision_only else math.inf
    return MathVerseReport(
        per_version=per_version,
        counts={v: len(flags) for v, flags in by_version.items()},
        overall=mean,
        text=(per_version["text_dominant"] + per_version["text_lite"]) / 2,
        vision=(
            per_version["vision_intensive"]
            + per_version["vision_dominant"]
            + per_version["vision_only"]
        )
        / 3,
        gap=gap,
        abs_skewness=abs(skewness(scored)),
        coefficient_of_variation=std / mean if mean else math.inf,
    )


# --- We-Math -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WeMathProblem:
    """A multi-step problem: correctness of each one-step sub-problem and of the composite."""

    problem_id: str
    steps_correct: tuple[bool, ...]
    whole_correct: bool


@dataclasses.dataclass(frozen=True)
class WeMathReport:
    num_problems: int
    insufficient_knowledge: int  # IK: some step wrong, composite wrong
    inadequate_generalization: int  # IG: all steps right, composite wrong
    complete_mastery_strict: int  # CM: all steps right, composite right
    rote_memorization_strict: int  # RM: some step wrong, composite right
    complete_mastery_loose: int  # some step right, composite right
    rote_memorization_loose: int  # every step wrong, composite right
    score_strict: float  # (N - 0.5 IG - RM_strict - IK) / N
    score_loose: float  # (N - 0.5 IG - RM_loose - IK) / N
    rm_rate_strict: float  # RM / (CM + RM), strict counts
    rm_rate_loose: float


def wemath_report(problems: Sequence[WeMathProblem]) -> WeMathReport:
    """We-Math's four-dimensional metrics (Qiao et al. 2024), strict and loose."""
    if not problems:
        raise ValueError("We-Math metrics need at least one multi-step problem")
    counts = defaultdict(int)
    for problem in problems:
        if len(problem.steps_correct) < 2:
            raise ValueError(
                f"We-Math problem {problem.problem_id!r} has {len(problem.steps_correct)} step(s); "
                "multi-step problems have 2 or 3"
            )
        all_steps = all(problem.steps_correct)
        any_step = any(problem.steps_correct)
        if problem.whole_correct:
            counts["cm_strict" if all_steps else "rm_strict"] += 1
            counts["cm_loose" if any_step else "rm_loose"] += 1
        else:
            counts["ig" if all_steps else "ik"] += 1
    n = len(problems)

    def rate(rm: int, cm: int) -> float:
        return rm / (rm + cm) if rm + cm else 0.0

    return WeMathReport(
        num_problems=n,
        insufficient_knowledge=counts["ik"],
        inadequate_generalization=counts["ig"],
        complete_mastery_strict=counts["cm_strict"],
        rote_memorization_strict=counts["rm_strict"],
        complete_mastery_loose=counts["cm_loose"],
        rote_memorization_loose=counts["rm_loose"],
        score_strict=(n - 0.5 * counts["ig"] - counts["rm_strict"] - counts["ik"]) / n,
        score_loose=(n - 0.5 * counts["ig"] - counts["rm_loose"] - counts["ik"]) / n,
        rm_rate_strict=rate(counts["rm_strict"], counts["cm_strict"]),
        rm_rate_loose=rate(counts["rm_loose"], counts["cm_loose"]),
    )


def wemath_problems_from_rows(rows: Iterable[Mapping[str, object]]) -> list[WeMathProblem]:
    """Group We-Math testmini rows (`ID`, `key` like '2steps_1' / '2steps_multi', `correct`).

    One-step rows of the one-step split ('1step...') are not part of the 4-D metrics and are
    ignored by design (they are counted in plain accuracy instead).
    """
    groups: dict[tuple[int, str], dict[str, bool]] = defaultdict(dict)
    for index, row in enumerate(rows):
        for field in ("ID", "key", "correct"):
            if field not in row:
                raise KeyError(f"We-Math row {index} lacks field {field!r}")
        key = str(row["key"])
        if not key[0].isdigit() or "steps_" not in key:
            continue
        steps = int(key.split("steps_")[0])
        part = key.split("steps_")[1]
        groups[(steps, str(row["ID"]))][part] = bool(row["correct"])
    problems = []
    for (steps, problem_id), parts in sorted(groups.items()):
        expected = {str(i) for i in range(1, steps + 1)} | {"multi"}
        if set(parts) != expected:
            raise ValueError(
                f"We-Math problem {problem_id!r} ({steps} steps) has parts {sorted(parts)}, "
                f"expected {sorted(expected)}"
            )
        problems.append(
            WeMathProblem(
                problem_id=f"{steps}steps/{problem_id}",
                steps_correct=tuple(parts[str(i)] for i in range(1, steps + 1)),
                whole_correct=parts["multi"],
            )
        )
    return problems


# --- official breakdown rows ---------------------------------------------------------------------

MATHVISTA_BREAKDOWN_KEYS = (
    "question_type",
    "answer_type",
    "language",
    "source",
    "category",
    "task",
    "context",
    "grade",
    "skills",
)


def _cell(correct: int, total: int) -> dict[str, float | int]:
    return {"accuracy": correct / total if total else 0.0, "correct": correct, "total": total}


def mathvista_breakdown(
    rows: Iterable[tuple[Mapping[str, object], bool]],
) -> dict[str, dict[str, dict[str, float | int]]]:
    """MathVista's fine-grained scores (as its calculate_score writes them): for each metadata
    key, every value's {accuracy in [0, 1], correct, total}, sorted by accuracy, highest first.
    `skills` is a list per item; an item counts towards each of its skills."""
    counts: dict[str, dict[str, list[int]]] = {
        k: defaultdict(lambda: [0, 0]) for k in MATHVISTA_BREAKDOWN_KEYS
    }
    for metadata, correct in rows:
        for key in MATHVISTA_BREAKDOWN_KEYS:
            value = metadata.get(key)
            if value is None:
                continue
            for v in value if isinstance(value, (list, tuple)) else [value]:
                counts[key][str(v)][0] += bool(correct)
                counts[key][str(v)][1] += 1
    out = {}
    for key, table in counts.items():
        if table:
            cells = {v: _cell(c, t) for v, (c, t) in table.items()}
            out[key] = dict(sorted(cells.items(), key=lambda kv: kv[1]["accuracy"], reverse=True))
    return out


def mathverse_breakdown(rows: Iterable[tuple[str, str, str, bool]]) -> dict[str, object]:
    """The rows MathVerse's score script prints from (version, subject, subfield, correct):
    per subject-subfield, per subject, total (pooled over items), per version, and pooled."""
    by_field: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    by_version: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for version, subject, subfield, correct in rows:
        for cell in (by_field[subject][subfield], by_version[version]):
            cell[0] += bool(correct)
            cell[1] += 1
    subjects, subfields = {}, {}
    for subject, fields in by_field.items():
        right = sum(c for c, _ in fields.values())
        total = sum(t for _, t in fields.values())
        subjects[subject] = _cell(right, total)
        for subfield, (c, t) in fields.items():
            subfields[f"{subject}-{subfield}"] = _cell(c, t)
    right = sum(c for c, _ in by_version.values())
    total = sum(t for _, t in by_version.values())
    return {
        "per_subfield": subfields,
        "per_subject": subjects,
        "per_version": {v: _cell(c, t) for v, (c, t) in by_version.items()},
        "total": _cell(right, total),
    }


def wemath_step_report(
    rows: Iterable[Mapping[str, object]], concept_domain: Mapping[str, str] | None = None
) -> dict[str, object]:
    """We-Math's accuracy.py rows from testmini rows (`ID`, `key`, `correct`, optional
    `knowledge concept`): One-step (S1) = accuracy over the one-step sub-problems of the 2- and
    3-step problems; Two-step (S2) / Three-step (S3) = accuracy of the composite problems; per
    knowledge concept the sub-problems' accuracy, and per domain (with `concept_domain`, the
    knowledge-structure map) the mean of its concepts' accuracies."""
    steps = {"1": [0, 0], "2": [0, 0], "3": [0, 0]}
    concepts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        key = str(row["key"])
        if "steps_" not in key or key[0] not in "23":
            continue
        part = key.split("steps_")[1]
        cell = steps[key[0]] if part == "multi" else steps["1"]
        cell[0] += bool(row["correct"])
        cell[1] += 1
        concept = row.get("knowledge concept")
        if part != "multi" and concept:
            concepts[str(concept)][0] += bool(row["correct"])
            concepts[str(concept)][1] += 1
    report: dict[str, object] = {
        "one_step_s1": _cell(*steps["1"]),
        "two_step_s2": _cell(*steps["2"]),
        "three_step_s3": _cell(*steps["3"]),
        "per_concept": {k: _cell(c, t) for k, (c, t) in sorted(concepts.items())},
    }
    if concept_domain is not None:
        domains: dict[str, list[float]] = defaultdict(list)
        for concept, (c, t) in concepts.items():
            if concept in concept_domain:
                domains[concept_domain[concept]].append(c / t)
        report["per_domain"] = {d: sum(v) / len(v) for d, v in sorted(domains.items())}
    return report
