"""The shortened built-in demo end to end: data -> five stages -> eval -> HF export -> reload."""

import json
import math
import os

import pytest

from mathjax_vl.recipes.demo import loss_ends, run_demo
from mathjax_vl.recipes.demo_config import STAGES, get_config


def test_loss_ends_average_the_first_and_last_steps():
    assert loss_ends([4.0, 2.0, 3.0, 1.0, 0.5, 0.5], window=2) == (3.0, 0.5)
    assert loss_ends([2.0], window=3) == (2.0, 2.0)
    with pytest.raises(ValueError, match="no loss"):
        loss_ends([])


def test_unknown_demo_variant_is_an_error():
    with pytest.raises(ValueError, match="unknown demo config variant 'huge'"):
        get_config("huge")


def test_short_demo_runs_every_stage_and_reloads_in_transformers(tmp_path):
    config = get_config("short")
    config.out_dir = str(tmp_path / "demo")
    lines = []
    result = run_demo(config, log=lines.append)
    stages = result["stages"]
    assert [s["stage"] for s in stages] == list(STAGES)
    for stage in stages:
        assert stage["steps"] == config.train.steps[stage["stage"]]
        assert math.isfinite(stage["loss_first"]) and math.isfinite(stage["loss_last"])
        assert os.path.isfile(os.path.join(stage["workdir"], "config.py"))
    # Every stage lowers its loss on fixed batches, even in a few steps.
    for stage in stages:
        assert stage["fixed_after"] < stage["fixed_before"], stage
    artefacts = result["artefacts"]
    for key in (
        "contrastive",
        "puma_kl",
        "multimodal_sft",
        "image_to_code",
        "mathverse_eval",
        "text_sft",
    ):
        assert os.path.isdir(artefacts[key]), key
    assert os.path.isfile(os.path.join(artefacts["tokenizer"], "tokenizer.json"))
    assert os.path.isfile(os.path.join(artefacts["hf_export"], "config.json"))
    summary = json.loads(open(result["eval"]["files"]["summary"]).read())
    assert set(summary["per_version"]) >= {"text_dominant", "vision_only"}
    reload = result["reload"]
    assert reload["token_identical"], reload  # transformers answers exactly as our engine
    assert any("| puma_stage2 |" in line for line in lines)  # the printed summary table
    assert os.path.isfile(tmp_path / "demo" / "demo_summary.json")
    # The codify loop ran the image-to-code checkpoint: every figure has an outcome, failures are
    # contained by the sandbox (the run completed) and only matching renders would be kept.
    assert sum(result["codify"].values()) == config.eval.codify_figures
