"""One train step on 8 fake CPU devices under (data=2, fsdp=2, tensor=2) and (fsdp=8) equals the
single-device step: same loss, same updated parameters (float32, 1e-5)."""

from pathlib import Path

import jax
import numpy as np
import pytest

from mathjax_vl.train import data as data_lib
from mathjax_vl.train import state as state_lib
from mathjax_vl.train.config_loader import load_config
from mathjax_vl.train.trainer import Trainer

CONFIG = str(Path(__file__).parents[2] / "configs" / "tiny_text_sft.py")


def _one_step(mesh: dict, num_devices: int, tmp_path) -> tuple[float, dict, dict]:
    overrides = [f"--config.mesh.shape.{k}={v}" for k, v in mesh.items()]
    overrides += [f"--config.mesh.num_devices={num_devices}", "--config.optim.warmup_ratio=0.0"]
    overrides += ["--config.optim.schedule=constant"]
    # Adam's first update is g / (|g| + eps) ~ sign(g): at eps 1e-8 a gradient entry near zero
    # flips sign under a different (sharded) reduction order and the update jumps by 2 * lr.
    # eps 1e-3 keeps the update Lipschitz in g, so 1e-5 compares the step itself, not rounding.
    overrides += ["--config.optim.eps=1e-3"]
    config = load_config(CONFIG, overrides)
    trainer = Trainer(config, tmp_path)
    state = state_lib.init_state(trainer.task, trainer.tx, trainer.setup, jax.random.key(0))
    params_before = jax.device_get(state.params())
    it = data_lib.build_iterator(config, trainer.task, 0, 1)
    batch = data_lib.to_global(next(it), trainer.batch_shardings, trainer.global_batch)
    state, metrics = trainer.jitted(state, batch)
    # the shardings really are the ones asked for
    kernel = state.trainable["layers"]["mlp"]["gate_proj"]["kernel"]
    assert kernel.sharding.mesh.shape == trainer.mesh.shape
    return float(metrics["loss"]), params_before, jax.device_get(state.params())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _one_step({"data": 1, "fsdp": 1, "tensor": 1}, 1, tmp_path_factory.mktemp("single"))


@pytest.mark.parametrize(
    "mesh", [{"data": 2, "fsdp": 2, "tensor": 2}, {"data": 1, "fsdp": 8, "tensor": 1}]
)
def test_sharded_step_matches_single_device(mesh, reference, tmp_path):
    assert jax.device_count() == 8
    ref_loss, ref_before, ref_after = reference
    loss, before, after = _one_step(mesh, 8, tmp_path)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), before, ref_before)
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), after, before)
    assert max(jax.tree.leaves(moved)) > 1e-4  # the step really updated the parameters
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), after, ref_after
    )
