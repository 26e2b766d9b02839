"""Ablation statistics: MathVerse's numbers, the two-level bootstrap, the table and the chart."""

import math

import numpy as np
import pytest
from PIL import Image

from mathjax_vl.eval import metrics
from mathjax_vl.eval.scoring import ScoredItem
from mathjax_vl.recipes import ablation_stats as S

NAMES = {
    "text_only": "Text Only",
    "text_dominant": "Text Dominant",
    "text_lite": "Text Lite",
    "vision_intensive": "Vision Intensive",
    "vision_dominant": "Vision Dominant",
    "vision_only": "Vision Only",
}


def _items(correct: dict[str, list[bool]]) -> list[ScoredItem]:
    """Scored items from per-version correctness lists (one entry per problem)."""
    out = []
    for version, flags in correct.items():
        for p, flag in enumerate(flags):
            out.append(ScoredItem(f"p{p}", NAMES[version], "1", "", "1", "rule", flag))
    return out


def _random_items(rng, n_problems, rates):
    return _items({v: list(rng.random(n_problems) < rates[v]) for v in NAMES})


RATES_A = dict(
    text_only=0.9,
    text_dominant=0.9,
    text_lite=0.6,
    vision_intensive=0.5,
    vision_dominant=0.6,
    vision_only=0.4,
)
RATES_B = {**RATES_A, "vision_only": 0.2}


def test_point_values_are_mathverse_report_on_the_pooled_seeds():
    rng = np.random.default_rng(0)
    arms = {
        "1-2-3": {s: _random_items(rng, 40, RATES_A) for s in range(3)},
        "1-3": {s: _random_items(rng, 40, RATES_B) for s in range(3)},
    }
    stats = S.summarize_arms(arms, replicates=200, seed=1)
    for arm, seeds in arms.items():
        pooled = [(i.version, i.correct) for items in seeds.values() for i in items]
        report = metrics.mathverse_report(pooled)
        point = stats["arms"][arm]["point"]
        assert point["all"] == pytest.approx(100 * report.overall)
        assert point["gap"] == pytest.approx(100 * report.gap)
        assert point["cv"] == pytest.approx(report.coefficient_of_variation)
        assert point["abs_skewness"] == pytest.approx(report.abs_skewness)
        # The vectorised scalars agree with the report on the same accuracies.
        acc = np.array([report.per_version[v] for v in S.VERSIONS])
        again = S.scalars(acc)
        assert float(again["gap"]) == pytest.approx(100 * report.gap)
        assert float(again["abs_skewness"]) == pytest.approx(report.abs_skewness)
        for key in S.SCALARS:
            lo, hi = stats["arms"][arm]["ci"][key]
            assert lo <= hi
        # Per-seed values average to the pooled point (same problems for every seed).
        per_seed = stats["arms"][arm]["per_seed"]["vision_only"]
        assert np.mean(per_seed) == pytest.approx(point["vision_only"])
    diff = stats["difference"]
    vo = diff["vision_only"]
    a, b = (stats["arms"][arm]["point"]["vision_only"] for arm in ("1-2-3", "1-3"))
    assert vo["point"] == pytest.approx(a - b)
    assert vo["ci"][0] <= vo["point"] <= vo["ci"][1]


def test_one_seed_bootstrap_interval_matches_the_binomial_width():
    """With one seed the bootstrap only resamples problems: a version's 95% interval is close to
    the normal approximation p +- 1.96 sqrt(p (1 - p) / n)."""
    rng = np.random.default_rng(3)
    n = 400
    items = _random_items(rng, n, RATES_A)
    stats = S.summarize_arms({"a": {0: items}}, replicates=4000, seed=2)
    s = stats["arms"]["a"]
    for version in ("text_lite", "vision_only"):
        p = s["point"][version] / 100
        lo, hi = s["ci"][version]
        half = 100 * 1.96 * math.sqrt(p * (1 - p) / n)
        assert (hi - lo) / 2 == pytest.approx(half, rel=0.12)
        assert lo < 100 * p < hi
    assert "difference" not in stats


def test_gap_is_infinite_when_vision_only_is_never_right_and_constant_sets_have_no_spread():
    perfect = {v: [True] * 5 for v in NAMES}
    blind = {**perfect, "vision_only": [False] * 5}
    stats = S.summarize_arms(
        {
            "blind": {0: _items(blind), 1: _items(blind)},
            "ok": {0: _items(perfect), 1: _items(perfect)},
        },
        replicates=50,
    )
    assert math.isinf(stats["arms"]["blind"]["point"]["gap"])
    assert stats["arms"]["ok"]["point"]["gap"] == 0.0
    assert stats["arms"]["ok"]["ci"]["all"] == [100.0, 100.0]
    assert stats["arms"]["blind"]["point"]["all"] == pytest.approx(80.0)
    assert stats["difference"]["gap"]["ci"] is None  # inf - 0: no finite interval
    assert stats["difference"]["vision_only"]["point"] == -100.0


def test_missing_or_duplicate_answers_are_errors():
    full = {v: [True, False] for v in NAMES}
    items = _items(full)
    with pytest.raises(ValueError, match="cells missing"):
        S.correctness_array({0: items[:-1]})
    with pytest.raises(ValueError, match="two answers"):
        S.correctness_array({0: [*items, items[0]]})


def test_table_and_chart(tmp_path):
    rng = np.random.default_rng(5)
    arms = {
        "1-2-3": {s: _random_items(rng, 20, RATES_A) for s in range(2)},
        "1-3": {s: _random_items(rng, 20, RATES_B) for s in range(2)},
    }
    stats = S.summarize_arms(arms, replicates=100)
    table = S.markdown_table(stats)
    lines = table.splitlines()
    assert lines[0].startswith("| arm | ALL | TD | TL | VI | VD | VO | TO | gap % | CV |")
    assert lines[2].startswith("| 1-2-3 | ") and lines[4].startswith("| 1-2-3 minus 1-3 | ")
    all_a = stats["arms"]["1-2-3"]["point"]["all"]
    assert f"{all_a:.1f} [" in lines[2]
    path = S.bar_chart(stats, str(tmp_path / "chart.png"))
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 600
