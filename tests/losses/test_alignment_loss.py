"""Fused Math-PUMA objective (Eq. 1-5) against the float64 oracle and jax.grad of the naive one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mathjax_vl.losses.alignment_loss import AlignmentLossConfig, fused_alignment_loss
from mathjax_vl.losses.reference import naive_alignment_loss

NUM_SEQ = 3


def _fused_vg(cfg, hw, hs, w, labels, mask):
    def f(hw, hs, w):
        loss, parts = fused_alignment_loss(hw, hs, w, labels, mask, cfg, num_sequences=NUM_SEQ)
        return loss, parts

    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(hw, hs, w)


CASES = [
    # (normalization, strong_grad, vocab_block, seed); alpha / lam / tau are drawn from the seed
    ("token_mean", False, 256, 0),
    ("token_mean", True, None, 1),
    ("paper", False, None, 2),
    ("paper", True, 256, 3),
    ("released", False, 256, 4),
    ("released", True, None, 5),
]


@pytest.mark.parametrize("normalization,strong_grad,vocab_block,seed", CASES)
def test_matches_float64_oracle_and_naive_grad(
    oracle, normalization, strong_grad, vocab_block, seed
):
    rng = np.random.default_rng(100 + seed)
    alpha, lam, tau = rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.95), rng.uniform(0.5, 2.5)
    hw, hs, w, labels, mask = oracle.problem(seed, mask_p=rng.uniform(0.3, 0.9))
    cfg = AlignmentLossConfig(
        alpha, lam, tau, normalization, strong_grad, token_block=16, vocab_block=vocab_block
    )
    (loss, parts), grads = _fused_vg(cfg, hw, hs, w, labels, mask)
    ref_loss, ref_parts, ref_grads = oracle.alignment(
        hw, hs, w, labels, mask, alpha, lam, tau, normalization, NUM_SEQ, strong_grad=strong_grad
    )
    assert oracle.rel(loss, ref_loss) < 1e-5
    for k in ("ce", "fkl", "rkl"):
        assert oracle.rel(parts[k], ref_parts[k]) < 1e-5, k
    for got, want in zip(grads, ref_grads):  # d hw, d hs (zero when frozen), d W
        if strong_grad or np.any(want):
            assert oracle.rel(got, want) < 1e-5
        else:
            assert not np.any(np.asarray(got))

    naive = lambda hw, hs, w: naive_alignment_loss(hw, hs, w, labels, mask, cfg, NUM_SEQ)[0]
    nl, ng = jax.jit(jax.value_and_grad(naive, argnums=(0, 1, 2)))(hw, hs, w)
    assert oracle.rel(loss, nl) < 1e-5
    for a, b in zip(grads, ng):
        assert oracle.rel(a, b) < 1e-5 if np.any(np.asarray(b)) else not np.any(np.asarray(a))


def test_dv_layout_and_batched_shapes(oracle):
    hw, hs, w, labels, mask = oracle.problem(21, t=24, d=32, v=301)
    cfg = AlignmentLossConfig(0.5, 0.3, 1.3, token_block=7, vocab_block=128, w_layout="dv")
    args = (hw.reshape(4, 6, 32), hs.reshape(4, 6, 32), np.ascontiguousarray(w.T))
    loss, _ = fused_alignment_loss(*args, labels.reshape(4, 6), mask.reshape(4, 6), cfg)
    g = jax.grad(
        lambda w_: fused_alignment_loss(
            *args[:2], w_, labels.reshape(4, 6), mask.reshape(4, 6), cfg
        )[0]
    )(args[2])
    ref_loss, _, ref_grads = oracle.alignment(
        hw, hs, w, labels, mask, 0.5, 0.3, 1.3, "token_mean", strong_grad=False
    )
    assert oracle.rel(loss, ref_loss) < 1e-5
    assert oracle.rel(np.asarray(g).T, ref_grads[2]) < 1e-5


def test_bfloat16_operands_close_to_float32(oracle):
    hw, hs, w, labels, mask = oracle.problem(22)
    results = {}
    for dt in (None, "bfloat16"):
        cfg = AlignmentLossConfig(
            0.3, 0.5, 1.5, "released", True, token_block=16, vocab_block=256, matmul_dtype=dt
        )
        results[dt] = _fused_vg(cfg, hw, hs, w, labels, mask)
    (l32, _), g32 = results[None]
    (l16, _), g16 = results["bfloat16"]
    assert oracle.rel(l16, l32) < 1e-3
    for a, b in zip(g16, g32):
        assert a.dtype == jnp.float32
        assert oracle.rel(a, b) < 1e-2


def test_empty_mask_gives_zero_loss_and_zero_grads(oracle):
    hw, hs, w, labels, _ = oracle.problem(23, t=10, d=16, v=101)
    mask = np.zeros(10, bool)
    for norm in ("token_mean", "released"):
        cfg = AlignmentLossConfig(normalization=norm, strong_grad=True, token_block=4)
        (loss, parts), grads = _fused_vg(cfg, hw, hs, w, labels, mask)
        assert float(loss) == 0.0 and float(parts["n_tokens"]) == 0.0
        for g in grads:
            assert np.all(np.asarray(g) == 0.0)


def test_bad_inputs_raise_clear_errors(oracle):
    hw, hs, w, labels, mask = oracle.problem(24, t=10, d=16, v=101)
    with pytest.raises(ValueError, match="same shape"):
        fused_alignment_loss(hw, hs[:9], w, labels, mask)
    with pytest.raises(ValueError, match="D = 16"):
        fused_alignment_loss(hw[:, :8], hs[:, :8], w, labels, mask)
    with pytest.raises(ValueError, match="mask must have shape"):
        fused_alignment_loss(hw, hs, w, labels, mask[:3])
    bad = labels.copy()
    bad[np.argmax(mask)] = -5
    with pytest.raises(ValueError, match=r"outside \[0, 101\).*label -5"):
        fused_alignment_loss(hw, hs, w, bad, mask)
    with pytest.raises(ValueError, match="num_sequences"):
        fused_alignment_loss(hw, hs, w, labels, mask, AlignmentLossConfig(normalization="released"))
    with pytest.raises(ValueError, match="normalization must be one of"):
        AlignmentLossConfig(normalization="mean")
    with pytest.raises(ValueError, match="alpha"):
        AlignmentLossConfig(alpha=1.5)


def test_fused_temp_memory_is_under_10_percent_of_naive_at_8192_tokens():
    """Compile-only (no allocation): XLA's memory analysis of a value_and_grad step at the real
    Qwen2-1.5B shape, differentiating the weak hidden states (stage 2: LLM frozen) and also the
    LM head. The fused temp is O(token_block * V) plus the float32 dW accumulator, whatever T."""
    t, d, v = 8192, 1536, 151936
    sds = jax.ShapeDtypeStruct
    args = (
        sds((t, d), jnp.float32),
        sds((t, d), jnp.float32),
        sds((v, d), jnp.float32),
        sds((t,), jnp.int32),
        sds((t,), jnp.bool_),
    )
    cfg = AlignmentLossConfig()

    def temp_bytes(fn, argnums):
        f = lambda hw, hs, w, lab, m: fn(hw, hs, w, lab, m, cfg, 1)[0]
        g = jax.value_and_grad(f, argnums=argnums)
        return jax.jit(g).lower(*args).compile().memory_analysis().temp_size_in_bytes

    for argnums in ((0,), (0, 2)):
        fused = temp_bytes(fused_alignment_loss, argnums)
        naive = temp_bytes(naive_alignment_loss, argnums)
        print(f"grad wrt {argnums}: fused {fused / 2**20:.0f} MiB, naive {naive / 2**30:.2f} GiB")
        assert naive >= t * v * 4  # the naive objective holds [T, V] float32 arrays
        assert fused <= 0.1 * naive, (argnums, fused, naive)
        assert fused <= 4 * v * d + 4 * 4 * cfg.token_block * v  # dW + a few [Tc, V] blocks


@pytest.mark.parametrize("normalization", ["token_mean", "paper", "released"])
def test_microbatch_shares_with_global_normalizers_add_up_to_full_batch(oracle, normalization):
    """Gradient accumulation's contract (mathjax_vl.train.step): three microbatches with uneven
    active-token counts, each given the whole batch's token and sequence counts, sum to the
    float64 full-batch loss and gradients; each one's own normalisation (the old accumulation,
    a mean of the microbatch means) would not."""
    hw, hs, w, labels, mask = oracle.problem(11, mask_p=0.6)
    cfg = AlignmentLossConfig(0.5, 0.3, 1.7, normalization, False, token_block=16)
    chunks = [slice(i, i + 15) for i in (0, 15, 30)]  # 45 tokens -> 3 x 15
    assert len({int(mask[c].sum()) for c in chunks}) == 3

    @jax.jit
    def share(hw_, hs_, w_, labels_, mask_, num_sequences, num_tokens):
        f = lambda a, b: fused_alignment_loss(
            a, hs_, b, labels_, mask_, cfg, num_sequences, num_tokens=num_tokens
        )[0]
        return jax.value_and_grad(f, argnums=(0, 1))(hw_, w_)

    def run(num_sequences, num_tokens):
        out = [
            share(hw[c], hs[c], w, labels[c], mask[c], num_sequences, num_tokens) for c in chunks
        ]
        g_hw = np.concatenate([np.asarray(g[0]) for _, g in out])
        return [float(v) for v, _ in out], g_hw, sum(np.asarray(g[1], np.float64) for _, g in out)

    ref_loss, _, (ref_hw, _, ref_w) = oracle.alignment(
        hw, hs, w, labels, mask, 0.5, 0.3, 1.7, normalization, NUM_SEQ, strong_grad=False
    )
    losses, g_hw, g_w = run(float(NUM_SEQ), float(mask.sum()))
    assert oracle.rel(sum(losses), ref_loss) < 1e-5
    assert oracle.rel(g_hw, ref_hw) < 1e-5 and oracle.rel(g_w, ref_w) < 1e-5
    # per-microbatch normalisation: each its own token count (and a third of the sequences)
    own = [
        share(hw[c], hs[c], w, labels[c], mask[c], NUM_SEQ / 3, float(mask[c].sum()))
        for c in chunks
    ]
    assert oracle.rel(np.mean([float(v) for v, _ in own]), ref_loss) > 1e-3
