"""The DPO objective (task.name = "preference") on the VLM and on a bare decoder: its loss equals
a float64 NumPy DPO computed from the model's full logits, with images, masked prompts and
padding; its gradient equals the naive full-logits path; the reference gets no gradient;
microbatches with the whole batch's normalizers add up to the full batch.

The decoder + IPO case is `slow` (about 10 s more; the losses-level float64 tests cover IPO):
    python -m pytest -q -p no:xdist -m slow tests/train/test_preference_task.py
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mathjax_vl.errors import ConfigError
from mathjax_vl.train.config_base import base_config, tiny_decoder, tiny_vlm
from mathjax_vl.train.tasks.preference import DPO

B = 4


def _config(vlm: bool, **loss):
    c = base_config()
    c.task.name = "preference"
    if vlm:
        tiny_vlm(c)
        c.data.max_images = 1
    else:
        c.model.kind = "qwen2"
        c.model.decoder = ml_collections.ConfigDict(tiny_decoder())
    c.data.seq_len = 40
    c.optim.frozen = ["^reference/"]
    c.loss.update({"impl": "fused", "token_block": 16, **loss})
    return c


def _setup(vlm: bool, seed: int = 0, **loss):
    task = DPO(_config(vlm, **loss))
    rng = np.random.default_rng(seed)
    examples = [task.synthetic_example(rng) for _ in range(B)]
    if vlm:  # at least one pair with an image and one without
        examples[0] = task.synthetic_example(np.random.default_rng(100))
        assert examples[0]["image_mask"].sum() == 1
    batch = {k: jnp.asarray(np.stack([e[k] for e in examples])) for k in examples[0]}
    params = nn.meta.unbox(jax.jit(task.init)(jax.random.key(seed), batch))
    # a reference that differs from the policy, so the log-ratios are not all zero
    leaves, tree = jax.tree.flatten(params["reference"])
    noise = np.random.default_rng(seed + 1)
    noisy = [np.asarray(x) + 0.05 * noise.standard_normal(x.shape).astype(x.dtype) for x in leaves]
    params = {"policy": params["policy"], "reference": jax.tree.unflatten(tree, noisy)}
    return task, batch, params


def _np_seq_logprobs(task, params, batch):
    """float64 sums of log p(label) over each response [2B] (chosen rows, then rejected), from
    the model's full logits (its plain forward, not the task's hidden-state path)."""
    rows = task._rows(batch)
    z = np.asarray(_logits(task, params, rows), np.float64)  # [2B, L, V]
    lp = z - z.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    labels = np.asarray(rows["labels"])
    tgt = np.concatenate([labels[:, 1:], np.full((labels.shape[0], 1), -100)], axis=1)
    m = tgt != -100
    picked = np.take_along_axis(lp, np.where(m, tgt, 0)[..., None], -1)[..., 0]
    return (picked * m).sum(-1), m.sum(-1)


@functools.partial(jax.jit, static_argnums=0)
def _logits(task, params, rows):
    kwargs = {"attention_mask": rows["attention_mask"], "positions": rows["positions"]}
    if task.vlm:
        from mathjax_vl.train.tasks import vlm_common

        kwargs["pixel_values"] = vlm_common.flat_images(rows["pixel_values"], rows["image_mask"])
    return task.model.apply({"params": params}, rows["input_ids"], **kwargs).logits


def _np_dpo(task, params, batch, beta, eps, ipo):
    ratio = 0.0
    for who, sign in (("policy", 1.0), ("reference", -1.0)):
        s, n = _np_seq_logprobs(task, params[who], batch)
        ratio = ratio + sign * (s / np.maximum(n, 1) if ipo else s)
    h = ratio[:B] - ratio[B:]
    if ipo:
        return ((h - 1 / (2 * beta)) ** 2).mean()
    logsig = lambda x: -np.logaddexp(0.0, -x)
    return (-(1 - eps) * logsig(beta * h) - eps * logsig(-beta * h)).mean()


def _rel_tree(a, b):
    fa = jnp.concatenate([x.ravel() for x in jax.tree.leaves(a)])
    fb = jnp.concatenate([x.ravel() for x in jax.tree.leaves(b)])
    return float(jnp.max(jnp.abs(fa - fb)) / jnp.max(jnp.abs(fb)))


@pytest.mark.parametrize(
    "vlm,loss",
    [
        (True, {"beta": 0.5, "label_smoothing": 0.1}),
        pytest.param(False, {"beta": 0.3, "dpo_loss_type": "ipo"}, marks=pytest.mark.slow),
    ],
    ids=["vlm-cdpo", "decoder-ipo"],
)
def test_loss_equals_float64_dpo_from_full_logits_and_grad_equals_naive(vlm, loss):
    task, batch, params = _setup(vlm, **loss)
    # responses start after the prompt (and the image run): prompts and padding carry no loss
    assert np.all(np.asarray(batch["chosen_labels"])[:, :2] == -100)
    assert np.any(np.asarray(batch["chosen_attention_mask"]) == 0)
    fused = jax.jit(jax.value_and_grad(lambda p: task.loss(p, batch, None), has_aux=True))
    (value, parts), grads = fused(params)
    ref = _np_dpo(
        task, params, batch, loss["beta"], loss.get("label_smoothing", 0.0), "dpo_loss_type" in loss
    )
    assert abs(float(value) - ref) <= 1e-5 * max(1.0, abs(ref))
    naive_task = DPO(_config(vlm, **{**loss, "impl": "naive"}))
    (nvalue, nparts), ngrads = jax.jit(
        jax.value_and_grad(lambda p: naive_task.loss(p, batch, None), has_aux=True)
    )(params)
    assert abs(float(value) - float(nvalue)) <= 1e-5 * max(1.0, abs(float(nvalue)))
    assert _rel_tree(grads["policy"], ngrads["policy"]) < 1e-5
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads["reference"]))
    for k in ("chosen_reward", "rejected_reward", "margin", "accuracy"):
        assert abs(float(parts[k]) - float(nparts[k])) < 1e-5
    assert float(parts["pairs"]) == B


def test_microbatches_with_batch_normalizers_add_up():
    task, batch, params = _setup(False, seed=3, beta=0.4)

    def run(params, batch):
        norm = task.loss_normalizers(batch)
        halves = [
            task.loss(params, {k: v[s] for k, v in batch.items()}, None, normalizers=norm)
            for s in (slice(0, 1), slice(1, B))
        ]
        return task.loss(params, batch, None), halves

    (full, parts), halves = jax.jit(run)(params, batch)
    assert float(halves[0][0] + halves[1][0]) == pytest.approx(float(full), rel=1e-5)
    for k in ("margin", "accuracy", "chosen_reward", "pairs"):
        got = float(halves[0][1][k] + halves[1][1][k])
        # rewards are beta x differences of log-probs of ~100: float32 cancellation
        assert got == pytest.approx(float(parts[k]), rel=1e-5, abs=1e-5), k


def test_a_trainable_reference_is_refused():
    c = _config(False)
    c.optim.frozen = []
    with pytest.raises(ConfigError, match=r"optim.frozen.*reference"):
        DPO(c)
