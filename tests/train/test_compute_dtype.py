"""optim.param_compute_dtype=bfloat16 (float32 master weights cast once per step) against the
float32 step: same batch, same initial state.

Stated bound: casting rounds every weight to bfloat16's 8 significant bits (relative 2^-9 =
2e-3), so the gradient is off by about that much (measured 2.7e-3 relative, L2 over all
parameters) and the updated parameters by less (6.8e-4); the loss averages the rounding out
(4e-6). Bounds: loss 1e-4, gradient 1e-2, parameters 5e-3 relative; the master weights stay
float32, and each difference must be non-zero (an ignored compute dtype gives float32 exactly).
"""

from pathlib import Path

import jax
import numpy as np
from flax import traverse_util

from mathjax_vl.train import data as data_lib
from mathjax_vl.train import state as state_lib
from mathjax_vl.train.config_loader import load_config
from mathjax_vl.train.trainer import Trainer

CONFIG = str(Path(__file__).parents[2] / "configs" / "tiny_text_sft.py")


def _step(dtype: str, tmp_path, host_state=None):
    config = load_config(
        CONFIG,
        [
            "--config.mesh.num_devices=1",
            "--config.optim.warmup_ratio=0.0",
            "--config.optim.schedule=constant",
            f"--config.optim.param_compute_dtype={dtype}",
        ],
    )
    trainer = Trainer(config, tmp_path)
    if host_state is None:
        state = state_lib.init_state(trainer.task, trainer.tx, trainer.setup, jax.random.key(0))
        host_state = jax.device_get(state)
    state = jax.device_put(host_state, trainer.setup.shardings)
    host = next(data_lib.build_iterator(config, trainer.task, 0, 1))
    batch = data_lib.to_global(host, trainer.batch_shardings, trainer.global_batch)
    state, metrics = trainer.jitted(state, batch)
    state = jax.device_get(state)
    flat = lambda t: traverse_util.flatten_dict(t, sep="/")
    return host_state, jax.device_get(metrics), flat(state.opt_state[1][0].mu), flat(state.params())


def _norm(tree: dict) -> float:
    return float(np.sqrt(sum(np.sum(np.asarray(v, np.float64) ** 2) for v in tree.values())))


def test_bfloat16_compute_matches_float32_within_bound(tmp_path):
    host_state, m32, g32, p32 = _step("", tmp_path)
    _, m16, g16, p16 = _step("bfloat16", tmp_path, host_state)
    loss_err = abs(float(m16["loss"]) - float(m32["loss"])) / abs(float(m32["loss"]))
    grad_err = _norm({k: g16[k].astype(np.float64) - g32[k] for k in g32}) / _norm(g32)
    assert 0.0 < loss_err < 1e-4, loss_err
    assert 0.0 < grad_err < 1e-2, grad_err
    param_err = _norm({k: p16[k].astype(np.float64) - p32[k] for k in p32}) / _norm(p32)
    print(f"bf16 vs f32: loss {loss_err:.2e}, gradient {grad_err:.2e}, params {param_err:.2e}")
    assert 0.0 < param_err < 5e-3, param_err
    assert all(v.dtype == np.float32 for v in p16.values())  # master weights stay float32
    assert all(v.dtype == np.float32 for v in g16.values())
