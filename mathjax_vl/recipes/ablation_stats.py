"""Statistics of an arm comparison on a MathVerse-style set: point values, bootstrap CIs, a chart.

Every arm is scored on the same problems with several training seeds. The point values are
MathVerse's (`eval.metrics.mathverse_report` on the seeds' pooled answers): ALL (mean of the five
scored versions), each version's accuracy, the text-vision gap (TD - VO) / VO, the coefficient of
variation and |skewness| of the five accuracies. The confidence intervals come from a two-level
percentile bootstrap: each replicate draws the seeds with replacement AND the problems with
replacement (a problem keeps all its versions), so both the training-seed spread and the finite
test set widen the interval. The arms share each replicate's draws, so the difference between
them is a paired comparison.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mathjax_vl.eval import metrics

VERSIONS = (*metrics.MATHVERSE_VERSIONS, metrics.MATHVERSE_TEXT_ONLY)
LABELS = {
    "all": "ALL",
    "text_dominant": "TD",
    "text_lite": "TL",
    "vision_intensive": "VI",
    "vision_dominant": "VD",
    "vision_only": "VO",
    "text_only": "TO",
}
SCALARS = ("all", *VERSIONS, "gap", "cv", "abs_skewness")


def correctness_array(items_by_seed: Mapping[int, Sequence[Any]]) -> tuple[np.ndarray, list[str]]:
    """{seed: scored items} -> bool [seeds, problems, versions] (VERSIONS order), problem ids.

    Every seed must have answered exactly the same (problem, version) cells, once each.
    """
    seeds = sorted(items_by_seed)
    problem_ids = sorted({i.problem_id for i in items_by_seed[seeds[0]]})
    column = {p: k for k, p in enumerate(problem_ids)}
    out = np.zeros((len(seeds), len(problem_ids), len(VERSIONS)), dtype=bool)
    for s, seed in enumerate(seeds):
        seen = np.zeros(out.shape[1:], dtype=bool)
        for item in items_by_seed[seed]:
            v = VERSIONS.index(metrics.canonical_version(item.version))
            p = column[item.problem_id]  # a problem no other seed has raises KeyError
            if seen[p, v]:
                raise ValueError(f"seed {seed}: two answers for {item.problem_id} {item.version}")
            seen[p, v] = True
            out[s, p, v] = item.correct
        if not seen.all():
            raise ValueError(f"seed {seed}: {int((~seen).sum())} (problem, version) cells missing")
    return out, problem_ids


def scalars(acc: np.ndarray) -> dict[str, np.ndarray]:
    """Per-version accuracies [..., versions] (fractions) -> the reported numbers (percent)."""
    five = acc[..., : len(metrics.MATHVERSE_VERSIONS)]
    mean = five.mean(-1)
    std = five.std(-1)
    centred = five - mean[..., None]
    m2, m3 = (centred**2).mean(-1), (centred**3).mean(-1)
    td = acc[..., VERSIONS.index("text_dominant")]
    vo = acc[..., VERSIONS.index("vision_only")]
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.where(vo > 0, (td - vo) / np.where(vo > 0, vo, 1.0), np.inf)
        cv = np.where(mean > 0, std / np.where(mean > 0, mean, 1.0), np.inf)
        skew = np.where(m2 > 0, m3 / np.where(m2 > 0, m2, 1.0) ** 1.5, 0.0)
    out = {"all": 100.0 * mean, "gap": 100.0 * gap, "cv": cv, "abs_skewness": np.abs(skew)}
    for k, version in enumerate(VERSIONS):
        out[version] = 100.0 * acc[..., k]
    return out


def _interval(values: np.ndarray, ci: float) -> list[float]:
    lo, hi = np.quantile(values, [(1 - ci) / 2, (1 + ci) / 2], method="inverted_cdf")
    return [float(lo), float(hi)]


def summarize_arms(
    items: Mapping[str, Mapping[int, Sequence[Any]]],
    replicates: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """{arm: {seed: scored items}} -> per arm: point values, CIs, per-seed values; and the
    paired difference (first arm - second) with its CI."""
    arms = list(items)
    arrays = {}
    problem_ids = None
    for arm in arms:
        arrays[arm], ids = correctness_array(items[arm])
        if problem_ids is not None and ids != problem_ids:
            raise ValueError(f"arm {arm!r} was scored on other problems than arm {arms[0]!r}")
        problem_ids = ids
    n_seeds, n_problems = arrays[arms[0]].shape[:2]
    rng = np.random.default_rng(seed)
    seed_draws = rng.integers(n_seeds, size=(replicates, n_seeds))
    problem_draws = rng.integers(n_problems, size=(replicates, n_problems))
    out: dict[str, Any] = {"arms": {}, "replicates": replicates, "ci": ci}
    boot = {}
    for arm in arms:
        a = arrays[arm].astype(np.float64)
        point = _point(items[arm])
        # [replicates, seeds, problems, versions] -> mean over the drawn seeds and problems
        drawn = a[seed_draws[:, :, None], problem_draws[:, None, :]]
        boot[arm] = scalars(drawn.mean(axis=(1, 2)))
        per_seed = scalars(a.mean(axis=1))
        out["arms"][arm] = {
            "point": point,
            "ci": {k: _interval(boot[arm][k], ci) for k in SCALARS},
            "per_seed": {k: [float(x) for x in per_seed[k]] for k in SCALARS},
            "seeds": sorted(items[arm]),
        }
    if len(arms) == 2:
        first, second = arms
        diff = {}
        for k in SCALARS:
            with np.errstate(invalid="ignore"):  # inf - inf (an unbounded gap) -> nan, no CI
                values = boot[first][k] - boot[second][k]
            finite = np.isfinite(values)
            point = out["arms"][first]["point"][k] - out["arms"][second]["point"][k]
            diff[k] = {
                "point": point,
                "ci": _interval(values, ci) if finite.all() else None,
                "share_above_zero": float((values > 0).mean()),
            }
        out["difference"] = {"arms": [first, second], **diff}
    out["num_problems"] = n_problems
    out["num_seeds"] = n_seeds
    return out


def _point(items_by_seed: Mapping[int, Sequence[Any]]) -> dict[str, float]:
    """MathVerse's own aggregation of every seed's answers pooled (percent, like the papers)."""
    pooled = [(i.version, i.correct) for seed in items_by_seed for i in items_by_seed[seed]]
    report = metrics.mathverse_report(pooled)
    point = {"all": 100.0 * report.overall, "gap": 100.0 * report.gap}
    point.update({v: 100.0 * report.per_version[v] for v in VERSIONS})
    point["cv"] = report.coefficient_of_variation
    point["abs_skewness"] = report.abs_skewness
    return point


def _fmt(value: float, digits: int = 1) -> str:
    return "inf" if not math.isfinite(value) else f"{value:.{digits}f}"


def markdown_table(stats: Mapping[str, Any], ci: float = 0.95) -> str:
    """Arms (and their difference) x (ALL, versions, gap, CV, |skew|), each 'value [lo, hi]'."""
    cols = [(k, LABELS.get(k, k)) for k in ("all", *VERSIONS)]
    cols += [("gap", "gap %"), ("cv", "CV"), ("abs_skewness", "|skew|")]
    lines = [
        f"| arm | {' | '.join(label for _, label in cols)} |",
        "| --- |" + " ---: |" * len(cols),
    ]
    for arm, s in stats["arms"].items():
        cells = []
        for key, _ in cols:
            digits = 2 if key in ("cv", "abs_skewness") else 1
            lo, hi = s["ci"][key]
            cells.append(
                f"{_fmt(s['point'][key], digits)} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"
            )
        lines.append(f"| {arm} | {' | '.join(cells)} |")
    if "difference" in stats:
        d = stats["difference"]
        cells = []
        for key, _ in cols:
            digits = 2 if key in ("cv", "abs_skewness") else 1
            interval = d[key]["ci"]
            span = ""
            if interval:
                span = f" [{_fmt(interval[0], digits)}, {_fmt(interval[1], digits)}]"
            cells.append(f"{_fmt(d[key]['point'], digits)}{span}")
        lines.append(f"| {d['arms'][0]} minus {d['arms'][1]} | {' | '.join(cells)} |")
    lines.append(
        f"\nAccuracies in %; [{100 * ci:.0f}% CI], two-level bootstrap over seeds and problems "
        f"({stats['replicates']} replicates; {stats['num_seeds']} seeds x "
        f"{stats['num_problems']} problems per arm)."
    )
    return "\n".join(lines)


def bar_chart(stats: Mapping[str, Any], path: str, ci: float = 0.95) -> str:
    """Grouped bars per version (as Math-PUMA's figure), one colour per arm, CI error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("all", *VERSIONS)
    arms = list(stats["arms"])
    width = 0.8 / len(arms)
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110)
    x = np.arange(len(keys))
    for k, arm in enumerate(arms):
        s = stats["arms"][arm]
        values = np.array([s["point"][key] for key in keys])
        lo = np.array([s["ci"][key][0] for key in keys])
        hi = np.array([s["ci"][key][1] for key in keys])
        gap = _fmt(s["point"]["gap"])
        bars = ax.bar(
            x + (k - (len(arms) - 1) / 2) * width,
            values,
            width,
            yerr=np.stack([values - lo, hi - values]),
            capsize=3,
            label=f"{arm} (gap {gap}%)",
        )
        ax.bar_label(bars, labels=[f"{v:.0f}" for v in values], fontsize=7, padding=2)
    ax.set_xticks(x, [LABELS[key] for key in keys])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(
        f"Math-PUMA stage-2 ablation (toy): {stats['num_seeds']} seeds x "
        f"{stats['num_problems']} held-out problems, {100 * ci:.0f}% bootstrap CI"
    )
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
