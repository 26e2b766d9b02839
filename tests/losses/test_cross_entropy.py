"""Fused CE (+ z-loss) against the float64 oracle and the naive JAX version."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mathjax_vl.losses.cross_entropy import (
    CrossEntropyConfig,
    fused_cross_entropy,
    next_token_targets,
)
from mathjax_vl.losses.reference import naive_cross_entropy


def _value_and_grad(cfg, h, w, targets, mask):
    f = lambda h, w: fused_cross_entropy(h, w, targets, mask, cfg)[0]
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(h, w)


@pytest.mark.parametrize(
    "z_loss,vocab_block,layout",
    [(0.0, None, "vd"), (1e-2, 256, "vd"), (1e-2, 300, "dv")],
)
def test_fused_ce_matches_float64_oracle_and_naive(oracle, z_loss, vocab_block, layout):
    h, _, w, targets, mask = oracle.problem(11, t=45, d=64, v=1001)
    cfg = CrossEntropyConfig(z_loss, token_block=16, vocab_block=vocab_block, w_layout=layout)
    w_in = w if layout == "vd" else np.ascontiguousarray(w.T)
    loss, (gh, gw) = _value_and_grad(cfg, h, w_in, targets, mask)
    ref_loss, (rgh, rgw) = oracle.cross_entropy(h, w, targets, mask, z_loss)
    gw = np.asarray(gw) if layout == "vd" else np.asarray(gw).T
    assert oracle.rel(loss, ref_loss) < 1e-5
    assert oracle.rel(gh, rgh) < 1e-5
    assert oracle.rel(gw, rgw) < 1e-5
    nf = lambda h, w: naive_cross_entropy(h, w, targets, mask, z_loss)
    nl, (ngh, ngw) = jax.value_and_grad(nf, argnums=(0, 1))(h, w)
    assert oracle.rel(loss, nl) < 1e-5 and oracle.rel(gh, ngh) < 1e-5
    assert oracle.rel(gw, ngw) < 1e-5


def test_parts_and_default_mask(oracle):
    h, _, w, targets, mask = oracle.problem(12, t=20, d=16, v=97)
    loss, parts = fused_cross_entropy(h, w, targets, None, CrossEntropyConfig(0.1, token_block=8))
    ref_ce, _ = oracle.cross_entropy(h, w, targets, mask, 0.0)
    assert float(parts["n_tokens"]) == mask.sum()
    assert oracle.rel(parts["ce"], ref_ce) < 1e-5
    assert oracle.rel(loss, parts["ce"] + 0.1 * parts["z_loss"]) < 1e-6


def test_batched_inputs_flatten(oracle):
    h, _, w, targets, mask = oracle.problem(13, t=24, d=16, v=97)
    cfg = CrossEntropyConfig(token_block=5)
    flat, _ = fused_cross_entropy(h, w, targets, mask, cfg)
    batched, _ = fused_cross_entropy(
        h.reshape(3, 8, 16), w, targets.reshape(3, 8), mask.reshape(3, 8), cfg
    )
    np.testing.assert_allclose(flat, batched, rtol=1e-6)


def test_next_token_targets_shifts_and_pads():
    labels = jnp.array([[-100, 5, 6, 7], [1, 2, -100, -100]])
    np.testing.assert_array_equal(
        next_token_targets(labels), [[5, 6, 7, -100], [2, -100, -100, -100]]
    )


def test_empty_mask_gives_zero_loss_and_zero_grads(oracle):
    h, _, w, targets, _ = oracle.problem(14, t=9, d=16, v=97)
    mask = np.zeros(9, bool)
    loss, (gh, gw) = _value_and_grad(CrossEntropyConfig(0.1, token_block=4), h, w, targets, mask)
    assert float(loss) == 0.0
    assert not np.any(np.asarray(gh)) and not np.any(np.asarray(gw))


def test_bad_inputs_raise_clear_errors(oracle):
    h, _, w, targets, mask = oracle.problem(15, t=9, d=16, v=97)
    with pytest.raises(ValueError, match="D = 16"):
        fused_cross_entropy(h[:, :8], w, targets, mask)
    with pytest.raises(ValueError, match="targets must have shape"):
        fused_cross_entropy(h, w, targets[:5], mask)
    bad = targets.copy()
    bad[np.argmax(mask)] = 97
    with pytest.raises(ValueError, match=r"outside \[0, 97\).*label 97"):
        fused_cross_entropy(h, w, bad, mask)
    with pytest.raises(ValueError, match="w_layout"):
        fused_cross_entropy(h, w, targets, mask, CrossEntropyConfig(w_layout="xy"))
    # under jit the range check cannot raise: the loss is NaN instead of silently wrong
    jitted = jax.jit(lambda t: fused_cross_entropy(h, w, t, mask)[0])
    assert np.isnan(float(jitted(bad)))


@pytest.mark.parametrize("token_block", [4, 16, 64])
def test_skip_inactive_matches_oracle_on_sparse_masks(oracle, token_block):
    """Masked rows scattered through the batch (prompts, image placeholders, padding): running
    only the chunks of active rows, then restoring the row order, gives the oracle's values."""
    h, _, w, targets, _ = oracle.problem(16, t=50, d=32, v=257)
    targets = np.where(targets < 0, 0, targets)
    mask = np.random.default_rng(3).random(50) < 0.3
    ref_loss, (rgh, rgw) = oracle.cross_entropy(h, w, targets, mask, 0.01)
    for skip in (True, False):
        cfg = CrossEntropyConfig(0.01, token_block=token_block, skip_inactive=skip)
        loss, (gh, gw) = _value_and_grad(cfg, h, w, targets, mask)
        assert oracle.rel(loss, ref_loss) < 1e-5
        assert oracle.rel(gh, rgh) < 1e-5 and oracle.rel(gw, rgw) < 1e-5
        assert not np.any(np.asarray(gh)[~mask])  # inactive rows get exactly zero gradient


def test_microbatch_shares_with_global_token_count_add_up_to_full_batch(oracle):
    """Accumulation's contract: microbatches with uneven active-token counts, each given the
    whole batch's token count, sum to the float64 full-batch CE + z-loss and its gradients, and
    their parts (ce, z_loss, n_tokens) to the full batch's."""
    h, _, w, targets, mask = oracle.problem(12, t=45, d=64, v=1001, mask_p=0.6)
    cfg = CrossEntropyConfig(1e-2, token_block=16)
    chunks = [slice(i, i + 15) for i in (0, 15, 30)]
    assert len({int(mask[c].sum()) for c in chunks}) == 3

    @jax.jit
    def share(h_, w_, t_, m_, n):
        f = lambda a, b: fused_cross_entropy(a, b, t_, m_, cfg, num_tokens=n)
        return jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(h_, w_)

    out = [share(h[c], w, targets[c], mask[c], float(mask.sum())) for c in chunks]
    ref_loss, (rgh, rgw) = oracle.cross_entropy(h, w, targets, mask, 1e-2)
    assert oracle.rel(sum(float(v[0]) for v, _ in out), ref_loss) < 1e-5
    g_h = np.concatenate([np.asarray(g[0]) for _, g in out])
    g_w = sum(np.asarray(g[1], np.float64) for _, g in out)
    assert oracle.rel(g_h, rgh) < 1e-5 and oracle.rel(g_w, rgw) < 1e-5
    full = fused_cross_entropy(h, w, targets, mask, cfg)[1]
    for k in ("ce", "z_loss", "n_tokens"):
        assert oracle.rel(sum(float(v[1][k]) for v, _ in out), full[k]) < 1e-6, k
