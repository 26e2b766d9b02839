"""Preference losses: per-sequence log-probabilities from the streaming engine, and DPO.

Per-sequence log-probabilities `log pi(y | x) = sum_t log p(y_t | x, y_<t)` over a response's
positions are what DPO (Rafailov et al. 2023), its conservative variant and IPO compare. They come
from the same token-chunk x vocab-block streaming as the fused CE (mathjax_vl.losses.streaming):
no `[tokens, vocab]` logits exist, in the forward or the backward.

Unlike the CE, DPO's weight on each token's log-probability depends on the whole sequence's value
(the sigmoid of the reward margin), which is unknown when the logits are first streamed. So
`fused_token_logprobs` is a custom_vjp whose forward streams the log-sum-exp only (pass 1 of the
engine) and whose backward runs the engine once more with the cotangent as per-token weights
(passes 1-2: `sum_t g_t log p_t` is `-sum_t g_t CE_t`, exactly the engine's weighted CE). That is
one extra logits matmul (8*T*D*V FLOPs in all, instead of the CE's 6*T*D*V), and the reference
model, which is never differentiated, pays only the forward (2*T*D*V).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from mathjax_vl.losses import _checks
from mathjax_vl.losses.constants import IGNORE_INDEX
from mathjax_vl.losses.streaming import (
    EngineSpec,
    _Engine,
    _label_rows,
    _logits,
    _loop_vocab,
    _run,
    _w_block,
    check_labels_concrete,
)

LOSS_TYPES = ("sigmoid", "ipo")


@dataclasses.dataclass(frozen=True)
class LogprobConfig:
    """Streaming knobs, as CrossEntropyConfig (token chunks, vocab blocks, matmul dtype)."""

    token_block: int = 256
    vocab_block: int | None = None
    matmul_dtype: str | None = None
    w_layout: str = "vd"
    skip_inactive: bool = True


def _spec(cfg: LogprobConfig) -> EngineSpec:
    return EngineSpec(
        has_kl=False,
        strong_grad=False,
        zscore=False,
        tau=1.0,
        w_ce=1.0,
        w_z=0.0,
        w_fkl=0.0,
        w_rkl=0.0,
        token_block=cfg.token_block,
        vocab_block=cfg.vocab_block,
        matmul_dtype=cfg.matmul_dtype,
        w_layout=cfg.w_layout,
        skip_inactive=cfg.skip_inactive,
    )


def _token_ce(spec: EngineSpec, h: jax.Array, w: jax.Array, labels, active) -> jax.Array:
    """Per-token CE [T] (0 where inactive): the engine's pass 1 over token chunks, keeping the
    per-token values its `_run` folds into sums. Active rows go first, as in `_run`."""
    t = h.shape[0]
    vocab = w.shape[0] if spec.w_layout == "vd" else w.shape[1]
    tc = min(spec.token_block, max(t, 1))
    n_chunks = -(-t // tc)
    pad = n_chunks * tc - t
    mdt = jnp.dtype(spec.matmul_dtype) if spec.matmul_dtype else jnp.result_type(h, w)
    a = active.astype(jnp.float32)
    rows = [h.astype(mdt), labels.astype(jnp.int32), a]
    order = inverse = None
    n_run = n_chunks
    if spec.skip_inactive:
        order = jnp.argsort(jnp.logical_not(active), stable=True)  # active rows first
        inverse = jnp.argsort(order)
        rows = [x[order] for x in rows]
        n_run = (jnp.sum(active, dtype=jnp.int32) + tc - 1) // tc
    hc, lc, ac = (
        jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape((n_chunks, tc, *x.shape[1:]))
        for x in rows
    )  # [n_chunks, Tc, ...]
    eng = _Engine(spec, vocab)

    def body(i, out):
        hw = jax.lax.dynamic_index_in_dim(hc, i, 0, False)  # [Tc, D]
        lab = jax.lax.dynamic_index_in_dim(lc, i, 0, False)
        a_c = jax.lax.dynamic_index_in_dim(ac, i, 0, False)

        def p1(v0, size, st):
            wb = _w_block(w, v0, size, spec.w_layout).astype(mdt)
            return eng.update_stats(st, _logits(hw, wb), None, None, None)

        st = _loop_vocab(p1, eng.init_stats(tc), vocab, spec.vocab_block)
        zy = jnp.einsum(
            "td,td->t",
            hw,
            _label_rows(w, lab, spec.w_layout).astype(mdt),
            preferred_element_type=jnp.float32,
        )
        found = (lab >= 0) & (lab < vocab)
        fin = eng.finalize(st, zy, found, a_c, jnp.zeros_like(a_c), None, None)
        return jax.lax.dynamic_update_index_in_dim(out, fin["ce"], i, 0)

    ce = jax.lax.fori_loop(0, n_run, body, jnp.zeros((n_chunks, tc), jnp.float32))
    ce = ce.reshape(-1)[:t]
    return ce if inverse is None else ce[inverse]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _token_logprobs(spec: EngineSpec, h, w, labels, active):
    return -_token_ce(spec, h, w, labels, active)


def _tl_fwd(spec, h, w, labels, active):
    return _token_logprobs(spec, h, w, labels, active), (h, w, labels, active)


def _tl_bwd(spec, res, g):
    h, w, labels, active = res
    # d/dx sum_t g_t logp_t = d/dx sum_t (-g_t) CE_t: the engine's weighted CE, weights -g.
    a = jnp.where(active, -g.astype(jnp.float32), 0.0)
    _, dh, _, dw = _run(spec, h, h, w, labels, a, jnp.zeros_like(a), needs=(True, False, True))
    return dh.astype(h.dtype), dw.astype(w.dtype), None, None


_token_logprobs.defvjp(_tl_fwd, _tl_bwd)


def fused_token_logprobs(
    hidden: jax.Array,
    lm_head: jax.Array,
    targets: jax.Array,
    mask: jax.Array | None = None,
    config: LogprobConfig = LogprobConfig(),
) -> jax.Array:
    """log p(target) at every position [...] (0 where masked), never holding [T, V] logits.

    hidden [..., D]; targets [...] already shifted (cross_entropy.next_token_targets); mask
    default targets != -100. Differentiable in hidden and lm_head (float32 statistics).
    """
    vocab, width = _checks.vocab_and_width(lm_head, config.w_layout)
    lead = hidden.shape[:-1]
    h = _checks.flatten_tokens("hidden", hidden, width)
    t = _checks.flatten_like("targets", targets, lead)
    m = t != IGNORE_INDEX if mask is None else _checks.flatten_like("mask", mask, lead)
    m = m.astype(bool)
    check_labels_concrete(t, m, vocab, "fused_token_logprobs targets")
    out = _token_logprobs(_spec(config), h, lm_head, jnp.where(m, t, 0), m)
    return out.reshape(lead)


def fused_sequence_logprobs(
    hidden: jax.Array,
    lm_head: jax.Array,
    targets: jax.Array,
    mask: jax.Array | None = None,
    config: LogprobConfig = LogprobConfig(),
    average: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """(log pi(y | x) [...], response tokens [...]) summed over each row's active positions.

    hidden [..., T, D]; targets / mask [..., T]. `average` divides by the row's token count
    (IPO's length-normalised log-probability); a row with no active position gives 0.
    """
    if hidden.ndim < 3:
        raise ValueError(f"hidden must be [..., T, D] with a row axis, got {hidden.shape}")
    m = targets != IGNORE_INDEX if mask is None else mask.astype(bool)
    tok = fused_token_logprobs(hidden, lm_head, targets, m, config)  # [..., T]
    n = jnp.sum(m, axis=-1, dtype=jnp.float32)
    seq = jnp.sum(tok, axis=-1)
    return (seq / jnp.maximum(n, 1.0) if average else seq), n


@dataclasses.dataclass(frozen=True)
class DPOConfig:
    """beta: the KL strength (reward scale). label_smoothing eps: the conservative DPO (cDPO)
    probability that a pair's preference label is flipped. loss_type: "sigmoid" (DPO, cDPO) or
    "ipo" (Azar et al. 2023: squared distance of the log-ratio margin from 1 / (2 beta), meant
    for length-normalised log-probabilities)."""

    beta: float = 0.1
    label_smoothing: float = 0.0
    loss_type: str = "sigmoid"

    def __post_init__(self):
        if self.beta <= 0:
            raise ValueError(f"DPO beta must be > 0, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.loss_type == "ipo" and self.label_smoothing:
            raise ValueError("label_smoothing applies to the sigmoid loss only, not to ipo")


def dpo_loss(
    policy_chosen: jax.Array,
    policy_rejected: jax.Array,
    reference_chosen: jax.Array,
    reference_rejected: jax.Array,
    config: DPOConfig = DPOConfig(),
    weights: jax.Array | None = None,
    num_pairs: jax.Array | float | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(loss, parts) from per-sequence log-probabilities [B] of the four (model, response) pairs.

    The reference values are treated as constants. `weights` [B] (1 = real pair, 0 = padding)
    and `num_pairs` (default weights.sum()) make loss and parts sums over pairs / num_pairs, so
    microbatches given the whole batch's count add up to its mean. Parts: chosen_reward and
    rejected_reward (beta * policy-reference log-ratio), margin (their difference) and accuracy
    (share of pairs with chosen_reward > rejected_reward), all means over pairs.
    """
    ref_c = jax.lax.stop_gradient(reference_chosen)
    ref_r = jax.lax.stop_gradient(reference_rejected)
    chosen_ratio = policy_chosen.astype(jnp.float32) - ref_c.astype(jnp.float32)
    rejected_ratio = policy_rejected.astype(jnp.float32) - ref_r.astype(jnp.float32)
    h = chosen_ratio - rejected_ratio  # [B]
    beta = config.beta
    if config.loss_type == "ipo":
        per_pair = jnp.square(h - 1.0 / (2.0 * beta))
    else:
        eps = config.label_smoothing
        per_pair = -(1.0 - eps) * jax.nn.log_sigmoid(beta * h) - eps * jax.nn.log_sigmoid(-beta * h)
    wts = jnp.ones_like(h) if weights is None else weights.astype(jnp.float32)
    denom = jnp.sum(wts) if num_pairs is None else jnp.asarray(num_pairs, jnp.float32)
    denom = jnp.maximum(denom, 1.0)

    def mean(x):
        return jnp.sum(wts * x) / denom

    chosen_reward = jax.lax.stop_gradient(beta * chosen_ratio)
    rejected_reward = jax.lax.stop_gradient(beta * rejected_ratio)
    parts = {
        "chosen_reward": mean(chosen_reward),
        "rejected_reward": mean(rejected_reward),
        "margin": mean(chosen_reward - rejected_reward),
        "accuracy": mean((chosen_reward > rejected_reward).astype(jnp.float32)),
        "pairs": jnp.sum(wts),
    }
    return mean(per_pair), parts
