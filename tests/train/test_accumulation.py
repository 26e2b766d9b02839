"""Gradient accumulation equals the full-batch step (float32, 1e-6 relative): the loss, every
logged loss part and the gradient norm each, the gradient and the updated parameters over the
whole tree (L2; each tensor within 1e-5, see `_trees_close`), for every
objective, with microbatches that hold uneven numbers of loss tokens (so the old mean of the
microbatch means would differ), on 1 device and on 8 fake devices (data 2 x fsdp 2 x tensor 2).
PUMA stage 2's full-batch step also shows the LLM frozen, with no optimizer state.

The default run covers both accumulation paths (normalised sums: SFT and PUMA "released", whose
KL divides by the GLOBAL sequence count; cached embeddings: CLIP) on 1 device and PUMA
"released" on 8 (see DEFAULT); tests/losses checks the normalisers of all three PUMA
normalisations and the CE with z-loss at the loss level. The rest of the matrix (every
objective x accumulation 2, 4 x 1 and 8 devices) is `slow`:

    python -m pytest -q -p no:xdist -m slow tests/train/test_accumulation.py
"""

from pathlib import Path

import jax
import numpy as np
import pytest
from flax import traverse_util

from mathjax_vl.train import data as data_lib
from mathjax_vl.train import state as state_lib
from mathjax_vl.train.config_loader import load_config
from mathjax_vl.train.tasks import common
from mathjax_vl.train.trainer import Trainer

CONFIGS = Path(__file__).parents[2] / "configs"
BATCH = 16  # divisible by 4 microbatches x 4 batch shards (the 8-device mesh below)
MESH8 = {"data": 2, "fsdp": 2, "tensor": 2}

OBJECTIVES = {
    "sft_naive": ("tiny_text_sft.py", []),
    "sft_fused_zloss": (
        "tiny_text_sft.py",
        ["--config.loss.impl=fused", "--config.loss.z_loss=0.1"],
    ),
    "multimodal_sft": ("tiny_multimodal_sft.py", []),
    "puma_token_mean": ("tiny_puma_kl.py", ["--config.loss.normalization=token_mean"]),
    "puma_paper": ("tiny_puma_kl.py", ["--config.loss.normalization=paper"]),
    "puma_released": (
        "tiny_puma_kl.py",
        [
            "--config.loss.normalization=released",
            "--config.loss.alpha=0.5",
            "--config.loss.tau=2.0",
        ],
    ),
    "clip": ("tiny_contrastive.py", []),
    "siglip": ("tiny_contrastive.py:siglip", []),
}
# (objective, devices) -> the accumulation steps checked by default; the rest is `slow`.
DEFAULT = {
    ("sft_naive", 1): (2, 4),
    ("puma_released", 1): (4,),
    ("clip", 1): (4,),
    ("puma_released", 8): (4,),
}
CASES = []
for _name in OBJECTIVES:
    for _dev in (1, 8):
        _fast = DEFAULT.get((_name, _dev), ())
        if _fast:
            CASES.append(pytest.param(_name, _dev, _fast, id=f"{_name}-{_dev}dev"))
        _rest = tuple(k for k in (2, 4) if k not in _fast)
        if _rest:
            CASES.append(
                pytest.param(
                    _name, _dev, _rest, marks=pytest.mark.slow, id=f"{_name}-{_dev}dev-slow"
                )
            )


def _uneven(host: dict) -> dict:
    """Make the microbatches' loss-token counts differ: row r drops its last (3 r) % (R - 1)
    response tokens
    (PUMA; SFT rows already have random lengths)."""
    host = dict(host)
    if "response_mask" in host:
        mask = host["response_mask"].copy()
        r = mask.shape[1]
        for row in range(mask.shape[0]):
            mask[row, r - (row * 3) % (r - 1) :] = 0
        host["response_mask"] = mask
    return host


def _token_counts(host: dict, k: int) -> list[float]:
    """Loss tokens in each of the k microbatches (rows i::k), as the step splits the batch."""
    if "response_mask" in host:
        per_row = host["response_mask"].sum(axis=1)
    elif "labels" in host:
        per_row = np.asarray(jax.vmap(lambda lab: common.target_count(lab[None]))(host["labels"]))
    else:
        return []
    return [float(per_row[i::k].sum()) for i in range(k)]


def _trainer(name: str, k: int, devices: int, tmp_path) -> tuple[Trainer, object]:
    file, overrides = OBJECTIVES[name]
    mesh = MESH8 if devices == 8 else {"data": 1, "fsdp": 1, "tensor": 1}
    config = load_config(
        str(CONFIGS / file),
        [
            *overrides,
            f"--config.mesh.num_devices={devices}",
            *[f"--config.mesh.shape.{a}={v}" for a, v in mesh.items()],
            f"--config.train.global_batch_size={BATCH}",
            f"--config.train.grad_accum_steps={k}",
            "--config.optim.warmup_ratio=0.0",
            "--config.optim.schedule=constant",
            # Adam's first update g / (|g| + eps) is ~sign(g): at eps 1e-8 it turns rounding
            # noise of gradients near 1e-8 into 1e-5 relative parameter differences (measured:
            # the key bias). eps 1e-3 keeps the update Lipschitz in g; the gradients themselves
            # are compared through Adam's first moment below.
            "--config.optim.eps=1e-3",
        ],
    )
    return Trainer(config, tmp_path), config


def _full_batch(name: str, devices: int, tmp_path) -> dict:
    """The full-batch step of `name`: its initial state and batch on the host, its metrics,
    updated parameters and gradient."""
    trainer, config = _trainer(name, 1, devices, tmp_path)
    state = state_lib.init_state(trainer.task, trainer.tx, trainer.setup, jax.random.key(0))
    host_state = jax.device_get(state)
    host = _uneven(next(data_lib.build_iterator(config, trainer.task, 0, 1)))
    after, metrics, grads = _run(trainer, host_state, host)
    return dict(state=host_state, batch=host, after=after, metrics=metrics, grads=grads)


def _run(trainer: Trainer, host_state, host: dict) -> tuple[dict, dict, dict]:
    """(updated params, metrics, gradient) of one step; the gradient (clipped) is read from
    Adam's first moment after the first step, mu = (1 - b1) g."""
    state = jax.device_put(host_state, trainer.setup.shardings)
    batch = data_lib.to_global(host, trainer.batch_shardings, BATCH)
    state, metrics = trainer.jitted(state, batch)
    state = jax.device_get(state)
    after = traverse_util.flatten_dict(state.params(), sep="/")
    grads = traverse_util.flatten_dict(state.opt_state[1][0].mu, sep="/")
    return after, jax.device_get(metrics), grads


def _norm(x) -> float:
    return float(np.linalg.norm(np.asarray(x, np.float64)))


def _trees_close(got: dict, want: dict, what: str, floor: float) -> None:
    """The whole tree within 1e-6 relative (L2 over every tensor), and each tensor within 1e-5
    of its own norm plus `floor`: float32 sums of k microbatch shares move a tensor by ~1e-6 of
    itself (measured up to 1.1e-6), and a tensor whose value is zero up to rounding (a key bias,
    invariant under the softmax's shift) carries no relative precision at all."""
    assert got.keys() == want.keys() and want
    total = np.sqrt(sum(_norm(want[k]) ** 2 for k in want))
    diff = np.sqrt(sum(_norm(np.asarray(got[k], np.float64) - want[k]) ** 2 for k in want))
    assert diff <= 1e-6 * total, f"{what}: |d| = {diff:.3g} of {total:.3g}"
    for key in want:
        err = _norm(np.asarray(got[key], np.float64) - want[key])
        assert err <= 1e-5 * _norm(want[key]) + floor, f"{what} {key}: |d| = {err:.3g}"


def _check_accumulated(ref: dict, name: str, k: int, devices: int, tmp_path) -> None:
    counts = _token_counts(ref["batch"], k)
    if counts:  # the microbatches really are uneven: a mean of their means is another objective
        assert len(set(counts)) > 1, counts
    trainer, _ = _trainer(name, k, devices, tmp_path)
    after, metrics, grads = _run(trainer, ref["state"], ref["batch"])
    assert bool(metrics["finite"])
    parts = [key for key in ref["metrics"] if key.startswith("loss")]
    assert parts == [key for key in metrics if key.startswith("loss")]
    for key in [*parts, "grad_norm"]:
        want = float(ref["metrics"][key])
        assert abs(float(metrics[key]) - want) <= 1e-6 * abs(want), f"k={k} {key}"
    g_total = np.sqrt(sum(_norm(v) ** 2 for v in ref["grads"].values()))
    _trees_close(grads, ref["grads"], f"k={k} gradient", floor=1e-7 * g_total)
    _trees_close(after, ref["after"], f"k={k} params", floor=1e-10)


@pytest.mark.parametrize(("name", "devices", "ks"), CASES)
def test_accumulated_step_equals_full_batch(name, devices, ks, tmp_path):
    assert jax.device_count() >= devices
    ref = _full_batch(name, devices, tmp_path)
    before = traverse_util.flatten_dict(ref["state"].params(), sep="/")
    moved = max(float(np.abs(ref["after"][p] - before[p]).max()) for p in before)
    assert moved > 1e-4  # the step really updated the parameters
    if name.startswith("puma"):  # stage 2: the LLM frozen, no optimizer state for it
        llm = [p for p in before if p.startswith("language_model/")]
        assert llm and all(np.array_equal(ref["after"][p], before[p]) for p in llm)
        assert ref["grads"] and not any(p.startswith("language_model/") for p in ref["grads"])
    for k in ks:
        _check_accumulated(ref, name, k, devices, tmp_path)


def test_task_without_an_accumulation_kind_is_refused():
    """A task that declares no way to reproduce the full batch (a plug-in written against the
    plain interface) cannot silently get the mean of microbatch means."""
    import optax

    from mathjax_vl.train.step import make_train_step
    from mathjax_vl.train.tasks.base import Task

    class Plain(Task):
        name = "plain"
        batch_spec = init = loss = synthetic_example = lambda self, *a: None

    tx, schedule = optax.sgd(1.0), optax.constant_schedule(1.0)
    make_train_step(Plain(), tx, schedule, accum_steps=1)  # fine without accumulation
    with pytest.raises(ValueError, match=r"grad_accum_steps=2: task 'plain'.*accumulation=None"):
        make_train_step(Plain(), tx, schedule, accum_steps=2)
