"""Fused per-sequence log-probabilities and the DPO / cDPO / IPO losses against float64 NumPy
computed from full [T, V] logits (padding, masked prompts, odd sizes for the block tails)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mathjax_vl.losses.preference import (
    DPOConfig,
    LogprobConfig,
    dpo_loss,
    fused_sequence_logprobs,
    fused_token_logprobs,
)

B, T, D, V = 3, 13, 32, 301


def _log_softmax(z):
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def _problem(seed):
    """Policy hidden states for chosen/rejected rows, reference ones, head, targets, masks.

    Each row: a prompt without loss, a response, then right padding (-100)."""
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(2, B, T, D)).astype(np.float32)  # [chosen|rejected, B, T, D]
    h_ref = (h + 0.3 * rng.normal(size=h.shape)).astype(np.float32)
    w = (0.3 * rng.normal(size=(V, D))).astype(np.float32)
    tgt = rng.integers(0, V, size=(2, B, T)).astype(np.int32)
    pos = np.arange(T)
    mask = np.zeros((2, B, T), bool)
    for s in range(2):
        for b in range(B):
            prompt, length = int(rng.integers(1, 5)), int(rng.integers(7, T + 1))
            mask[s, b] = (pos >= prompt) & (pos < length)
    tgt = np.where(mask, tgt, -100).astype(np.int32)
    return h, h_ref, w, tgt, mask


def np_seq_logprobs(h, w, tgt, mask, average=False):
    """[..., T, D] float64 -> per-row sum (or mean) of log p(target) over the mask."""
    lp = _log_softmax(np.asarray(h, np.float64) @ np.asarray(w, np.float64).T)
    picked = np.take_along_axis(lp, np.where(mask, tgt, 0)[..., None], -1)[..., 0]
    s = (picked * mask).sum(-1)
    return s / np.maximum(mask.sum(-1), 1) if average else s


def np_dpo(h, h_ref, w, tgt, mask, beta, eps, loss_type):
    """Loss, parts and dense gradients (d h, d w) in float64 from full logits."""
    h64, w64 = np.asarray(h, np.float64), np.asarray(w, np.float64)
    avg = loss_type == "ipo"
    pol = np_seq_logprobs(h64, w64, tgt, mask, avg)  # [2, B]
    ref = np_seq_logprobs(h_ref, w64, tgt, mask, avg)
    ratio = pol - ref
    hm = ratio[0] - ratio[1]

    def logsig(x):
        return -np.logaddexp(0.0, -x)

    if loss_type == "ipo":
        per = (hm - 1 / (2 * beta)) ** 2
        dper = 2 * (hm - 1 / (2 * beta))
    else:
        per = -(1 - eps) * logsig(beta * hm) - eps * logsig(-beta * hm)
        sig = 1 / (1 + np.exp(-beta * hm))
        dper = -(1 - eps) * beta * (1 - sig) + eps * beta * sig
    loss = per.mean()
    g_seq = np.stack([dper, -dper]) / B  # d loss / d pol [2, B]
    if avg:
        g_seq = g_seq / np.maximum(mask.sum(-1), 1)
    z = h64 @ w64.T  # [2, B, T, V]
    p = np.exp(_log_softmax(z))
    onehot = np.zeros_like(z)
    np.put_along_axis(onehot, np.where(mask, tgt, 0)[..., None], 1.0, -1)
    gz = (g_seq[..., None, None] * mask[..., None]) * (onehot - p)  # d loss / d logits
    gh = gz @ w64
    gw = np.einsum("sbtv,sbtd->vd", gz, h64)
    cr, rr = beta * ratio[0], beta * ratio[1]
    parts = {
        "chosen_reward": cr.mean(),
        "rejected_reward": rr.mean(),
        "margin": (cr - rr).mean(),
        "accuracy": (cr > rr).mean(),
    }
    return loss, parts, gh, gw


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize(
    "token_block,vocab_block,layout,skip",
    [(8, None, "vd", True), (5, 64, "dv", False), (64, 100, "vd", True)],
)
def test_fused_logprobs_equal_naive(token_block, vocab_block, layout, skip):
    h, _, w, tgt, mask = _problem(0)
    cfg = LogprobConfig(token_block, vocab_block, w_layout=layout, skip_inactive=skip)
    w_in = w if layout == "vd" else np.ascontiguousarray(w.T)
    seq, n = jax.jit(lambda h, w: fused_sequence_logprobs(h, w, tgt, None, cfg))(h, w_in)
    np.testing.assert_array_equal(n, mask.sum(-1))
    assert rel(seq, np_seq_logprobs(h, w, tgt, mask)) < 1e-5
    tok = fused_token_logprobs(h, w_in, tgt, mask, cfg)
    assert np.all(np.asarray(tok)[~mask] == 0.0)  # masked positions give exact zeros
    avg, _ = fused_sequence_logprobs(h, w_in, tgt, mask, cfg, average=True)
    assert rel(avg, np_seq_logprobs(h, w, tgt, mask, average=True)) < 1e-5


@pytest.mark.parametrize(
    "beta,eps,loss_type,vocab_block,layout",
    [
        (0.1, 0.0, "sigmoid", None, "vd"),
        (0.5, 0.2, "sigmoid", 128, "dv"),
        (0.3, 0.0, "ipo", None, "vd"),
    ],
)
def test_dpo_loss_and_gradients_equal_float64(beta, eps, loss_type, vocab_block, layout):
    h, h_ref, w, tgt, mask = _problem(1)
    cfg = LogprobConfig(token_block=8, vocab_block=vocab_block, w_layout=layout)
    dcfg = DPOConfig(beta, eps, loss_type)
    avg = loss_type == "ipo"
    flat_t, flat_m = tgt.reshape(2 * B, T), mask.reshape(2 * B, T)

    def f(h, w):
        pol, _ = fused_sequence_logprobs(h.reshape(2 * B, T, D), w, flat_t, flat_m, cfg, avg)
        ref, _ = fused_sequence_logprobs(h_ref.reshape(2 * B, T, D), w, flat_t, flat_m, cfg, avg)
        return dpo_loss(pol[:B], pol[B:], ref[:B], ref[B:], dcfg)

    w_in = w if layout == "vd" else np.ascontiguousarray(w.T)
    grad_fn = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))
    (loss, parts), (gh, gw) = grad_fn(h, w_in)
    gw = gw if layout == "vd" else np.asarray(gw).T
    ref_loss, ref_parts, rgh, rgw = np_dpo(h, h_ref, w, tgt, mask, beta, eps, loss_type)
    assert rel(loss, ref_loss) < 1e-5
    assert rel(gh, rgh) < 1e-5
    assert rel(gw, rgw) < 1e-5
    for k in ("chosen_reward", "rejected_reward", "margin"):
        assert abs(float(parts[k]) - ref_parts[k]) < 1e-5 * max(1.0, abs(ref_parts[k])), k
    assert float(parts["accuracy"]) == pytest.approx(ref_parts["accuracy"])
    assert np.all(np.asarray(gh)[~mask] == 0.0)  # prompts and padding get no gradient


def test_pair_weights_and_microbatch_sums():
    """Padding pairs (weight 0) drop out; two halves with the whole batch's count add up."""
    rng = np.random.default_rng(2)
    pc, pr, rc, rr = (jnp.asarray(rng.normal(size=6) * 3, jnp.float32) for _ in range(4))
    cfg = DPOConfig(beta=0.2, label_smoothing=0.1)
    full, parts = dpo_loss(pc, pr, rc, rr, cfg)
    halves = [
        dpo_loss(pc[s], pr[s], rc[s], rr[s], cfg, num_pairs=6) for s in (slice(0, 3), slice(3, 6))
    ]
    assert float(halves[0][0] + halves[1][0]) == pytest.approx(float(full), rel=1e-6)
    acc = halves[0][1]["accuracy"] + halves[1][1]["accuracy"]
    assert float(acc) == pytest.approx(float(parts["accuracy"]), rel=1e-6)
    wts = jnp.asarray([1, 1, 1, 0, 0, 0], jnp.float32)
    padded, pparts = dpo_loss(pc, pr, rc, rr, cfg, weights=wts)
    first, _ = dpo_loss(pc[:3], pr[:3], rc[:3], rr[:3], cfg)
    assert float(padded) == pytest.approx(float(first), rel=1e-6)
    assert float(pparts["pairs"]) == 3.0


def test_reference_gets_no_gradient_and_config_errors():
    x = jnp.asarray([0.3, -1.0])
    g = jax.grad(lambda r: dpo_loss(x, -x, r, r * 0.5)[0])(jnp.asarray([1.0, 2.0]))
    np.testing.assert_array_equal(g, 0.0)
    with pytest.raises(ValueError, match="beta"):
        DPOConfig(beta=0.0)
    with pytest.raises(ValueError, match="loss_type"):
        DPOConfig(loss_type="hinge2")
    with pytest.raises(ValueError, match="label_smoothing"):
        DPOConfig(label_smoothing=0.1, loss_type="ipo")
