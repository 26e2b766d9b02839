"""`benchmarks/puma_ablation.py --quick`: both arms end to end on a few records, same compute."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _benchmark():
    path = os.path.join(ROOT, "benchmarks", "puma_ablation.py")
    spec = importlib.util.spec_from_file_location("puma_ablation_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ~2.5 min on 2 cores: the harness end to end; the default suite keeps its argument checks.
@pytest.mark.slow
def test_quick_ablation_trains_both_arms_with_the_same_steps_and_scores_them(tmp_path):
    bench = _benchmark()
    out = tmp_path / "ablation"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    config = bench.get_config("quick")
    steps = config.train.steps
    for seed in map(str, config.seeds):
        runs = summary["runs"][seed]
        assert "clip_math" not in runs  # quick skips CLIP-Math (0 steps)
        assert runs["puma_stage3_no_stage2"]["steps"] == steps.puma_stage2 + steps.puma_stage3
        arms = summary["compute"]
        assert arms["1-2-3"][seed]["steps"] == arms["1-3"][seed]["steps"]
        assert arms["1-2-3"][seed]["steps"] == sum(
            steps[k] for k in ("puma_stage1", "puma_stage2", "puma_stage3")
        )
        assert arms["1-2-3"][seed]["tokens"] > 0 and arms["1-3"][seed]["tokens"] > 0
        # arm 1-3's stage 3 starts from stage 1, arm 1-2-3's from stage 2
        for run, parent in (
            ("puma_stage3_no_stage2", "puma_stage1"),
            ("puma_stage3", "puma_stage2"),
        ):
            saved = json.loads((out / "runs" / f"seed{seed}" / run / "config.json").read_text())
            assert saved["init"]["checkpoint"].endswith(os.path.join(parent, "checkpoints"))
    assert summary["eval_items"] == 6 * summary["eval_problems"] == 6 * config.data.n_eval_problems
    for arm in ("1-2-3", "1-3"):
        stats = summary["stats"]["arms"][arm]
        assert set(stats["point"]) >= {"all", "text_dominant", "vision_only", "text_only", "gap"}
        responses = out / "eval" / arm / "seed0" / "responses.jsonl"
        assert len(responses.read_text().splitlines()) == summary["eval_items"]
    assert (out / "puma_ablation.png").read_bytes().startswith(b"\x89PNG")
    assert "| 1-2-3 minus 1-3 |" in (out / "results.md").read_text()
    # A second run into the same directory refuses instead of mixing results.
    assert bench.main(["--quick", "--out", str(out)]) == 2


def test_unknown_variant_and_bad_override_are_errors(capsys):
    bench = _benchmark()
    with pytest.raises(ValueError, match="unknown ablation config variant 'huge'"):
        bench.get_config("huge")
    assert bench.main(["--quick", "--out", "/nonexistent/x", "--set", "train.nope=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train.nope" in err
