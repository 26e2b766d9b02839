"""The InternVL recipes (MathCoder-VL-2B / -8B, FigCodifier-8B): the real sizes are InternVL2-2B /
-8B (parameter counts, 256 tokens per 448 px tile, the tile budget), and the tiny variants train
a few steps through the one trainer with the loss going down."""

import jax
import numpy as np
import pytest

from mathjax_vl.models import registry
from mathjax_vl.train import data as data_lib
from mathjax_vl.train import state as state_lib
from mathjax_vl.train.config_loader import load_config
from mathjax_vl.train.tasks import build_task
from mathjax_vl.train.trainer import Trainer

# InternVL2-2B: InternViT-300M (0.30B) + MLP (0.01B) + InternLM2-chat-1.8B (1.89B) ~ 2.21B;
# InternVL2-8B: + InternLM2.5-7B-chat (7.74B) ~ 8.08B (the model cards' 2.2B / 8.1B).
REAL = {
    "internvl_mathcoder_vl.py:2b": (2048, 24, 2.21e9),
    "internvl_mathcoder_vl.py:8b,instruct": (4096, 32, 8.08e9),
    "internvl_figcodifier.py:8b": (4096, 32, 8.08e9),
}


@pytest.mark.parametrize("spec", sorted(REAL))
def test_real_sizes_are_internvl2(spec):
    hidden, layers, n_params = REAL[spec]
    config = load_config(f"configs/{spec}")
    task = build_task(config)
    cfg = task.vlm_cfg
    assert registry.kind_of(cfg) == "internvl" and registry.kind_of(cfg.text) == "llama"
    assert (cfg.text.hidden_size, cfg.text.num_hidden_layers, cfg.text.vocab_size) == (
        hidden, layers, 92553,
    )  # fmt: skip
    assert (cfg.vision.hidden_size, cfg.vision.num_layers, cfg.vision.image_size) == (1024, 24, 448)
    assert cfg.image_seq_length == 256 and cfg.image_token_id == 92546
    assert int(config.data.max_images) == cfg.vision.max_num_tiles + 1 == 7
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(registry.abstract_params(cfg)))
    assert abs(count - n_params) / n_params < 0.01, count


TINY = ["internvl_mathcoder_vl.py:tiny", "internvl_mathcoder_vl.py:tiny,instruct",
        "internvl_figcodifier.py:tiny"]  # fmt: skip


def _train_steps(spec, tmp_path, steps=4):
    config = load_config(
        f"configs/{spec}",
        [
            "--config.mesh.num_devices=1",
            "--config.train.global_batch_size=2",
            "--config.data.seq_len=48",
            "--config.optim.warmup_ratio=0.0",
            "--config.optim.schedule=constant",
        ],
    )
    config.data.kind = "synthetic"
    trainer = Trainer(config, tmp_path)
    state = state_lib.init_state(trainer.task, trainer.tx, trainer.setup, jax.random.key(0))
    it = data_lib.build_iterator(config, trainer.task, 0, 1)
    batch = data_lib.to_global(next(it), trainer.batch_shardings, 2)
    losses = []
    for _ in range(steps):  # the same batch: the loss must fall
        state, metrics = trainer.jitted(state, batch)
        losses.append(float(jax.device_get(metrics["loss"])))
    return batch, losses


@pytest.mark.parametrize(
    "spec", [pytest.param(s, marks=pytest.mark.slow) if i else s for i, s in enumerate(TINY)]
)
def test_tiny_variant_trains(spec, tmp_path):
    batch, losses = _train_steps(spec, tmp_path)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert batch["pixel_values"].shape[1:] == (3, 28, 28, 3)  # 2 tiles + thumbnail per row
