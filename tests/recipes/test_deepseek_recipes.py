"""Math-PUMA-DeepSeek-Math-VL-7B recipes: the published sizes, and the tiny hybrid trained a few
steps through the trainer (stage 2: towers and aligner learn, LLM frozen; stage 3: all learn)."""

from pathlib import Path

import jax
import numpy as np
import pytest
from flax import traverse_util

from mathjax_vl.train import data as data_lib
from mathjax_vl.train import state as state_lib
from mathjax_vl.train.config_loader import load_config
from mathjax_vl.train.tasks import build_task
from mathjax_vl.train.trainer import Trainer

CONFIGS = Path(__file__).parents[2] / "configs"
STAGES = (
    "deepseek_puma_stage1_text_sft",
    "deepseek_puma_stage2_kl",
    "deepseek_puma_stage3_instruct",
)


@pytest.mark.parametrize("stage", STAGES)
def test_published_sizes(stage):
    task = build_task(load_config(str(CONFIGS / f"{stage}.py")))
    cfg = getattr(task, "vlm_cfg", None) or task.model_cfg
    text = getattr(cfg, "text", cfg)
    # DeepSeek-Math-7B: LlamaForCausalLM, 4096 wide, 30 layers, vocab 102400
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (4096, 30, 102400)
    if stage != STAGES[0]:
        assert cfg.kind == "deepseek_vl_hybrid" and cfg.image_token_id == 100015
        assert cfg.image_seq_length == 576  # SigLIP-L/16 at 384 px, SAM-B downsampled to 24 x 24
        assert (cfg.vision.hidden_size, cfg.vision.num_layers) == (1024, 24)
        h = cfg.high_res
        assert (h.hidden_size, h.num_layers, h.image_size, h.global_attn_indexes) == (
            768,
            12,
            1024,
            (2, 5, 8, 11),
        )


def _trainer(stage, tmp_path, extra=()):
    config = load_config(
        str(CONFIGS / f"{stage}.py:tiny"),
        [
            "--config.data.kind=synthetic",
            "--config.data.seq_len=48",
            "--config.mesh.num_devices=1",
            "--config.train.global_batch_size=2",
            "--config.optim.warmup_ratio=0.0",
            "--config.optim.schedule=constant",
            "--config.optim.learning_rate=3e-3",
            *extra,
        ],
    )
    trainer = Trainer(config, tmp_path)
    state = state_lib.init_state(trainer.task, trainer.tx, trainer.setup, jax.random.key(0))
    batch = data_lib.to_global(
        next(data_lib.build_iterator(config, trainer.task, 0, 1)), trainer.batch_shardings, 2
    )
    return trainer, state, batch


def _flat(state):
    return traverse_util.flatten_dict(jax.device_get(state.params()), sep="/")


@pytest.mark.parametrize("stage", STAGES)
def test_tiny_variant_initialises_abstractly(stage):
    task = build_task(load_config(str(CONFIGS / f"{stage}.py:tiny")))
    params = jax.eval_shape(lambda b: task.init(jax.random.key(0), b), task.batch_spec(2))
    if stage != STAGES[0]:
        assert {"vision_tower", "high_res_vision_tower", "aligner_out"} <= set(params)


# ~30 s of CPU each (compiling the hybrid's train step): run with -m slow
@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES[1:])
def test_tiny_hybrid_trains(stage, tmp_path):
    extra = ["--config.data.response_len=12"] if "kl" in stage else []
    trainer, state, batch = _trainer(stage, tmp_path, extra)
    assert batch["weak_high_res_pixel_values" if "kl" in stage else "high_res_pixel_values"].shape[
        -3:
    ] == (64, 64, 3)
    before = _flat(state)
    losses = []
    for _ in range(4):  # the same batch: the loss must go down
        state, metrics = trainer.jitted(state, batch)
        metrics = jax.device_get(metrics)
        assert bool(metrics["finite"])
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0], losses
    after = _flat(state)
    moved = {k for k in after if not np.array_equal(after[k], before[k])}
    for part in ("vision_tower/", "high_res_vision_tower/encoder/", "high_res_vision_tower/neck_hd",
                 "aligner_high/", "aligner_low/", "aligner_out/"):  # fmt: skip
        assert any(k.startswith(part) for k in moved), part
    llm = {k for k in after if k.startswith("language_model/")}
    assert (llm & moved) == (set() if "kl" in stage else llm)


def test_pipeline_data_is_refused_with_a_clear_error(tmp_path):
    from mathjax_vl.errors import ConfigError
    from mathjax_vl.train import pipeline_adapter

    config = load_config(
        str(CONFIGS / "deepseek_puma_stage3_instruct.py:tiny"),
        [f"--config.data.dataset={tmp_path}", f"--config.data.tokenizer_dir={tmp_path}"],
    )
    task = build_task(config)
    with pytest.raises(ConfigError, match=r"\['high_res_pixel_values'\].*data.kind='synthetic'"):
        pipeline_adapter.build(config, task, 0, 1, 2)
