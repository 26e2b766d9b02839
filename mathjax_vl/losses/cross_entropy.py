"""Fused next-token cross-entropy (+ optional z-loss) straight from hidden states and LM head.

Used by stage 1 (text SFT), stage 3 (multimodal instruction tuning) and the image-to-code model.
Never materialises [tokens, vocab] logits: see mathjax_vl.losses.streaming for the scheme.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mathjax_vl.losses import _checks
from mathjax_vl.losses.constants import IGNORE_INDEX
from mathjax_vl.losses.streaming import (
    EngineSpec,
    check_labels_concrete,
    fused_engine,
    sharded_engine,
)


@dataclasses.dataclass(frozen=True)
class CrossEntropyConfig:
    """Knobs of the fused CE. z_loss_weight multiplies mean(log Z^2) (PaLM's z-loss)."""

    z_loss_weight: float = 0.0
    token_block: int = 256
    vocab_block: int | None = None  # None: whole vocabulary per token chunk (no recompute)
    matmul_dtype: str | None = None  # "bfloat16" for bf16 operands, float32 accumulation
    w_layout: str = "vd"  # "vd": lm_head is [V, D] (tied embeddings); "dv": [D, V]
    skip_inactive: bool = True  # skip token chunks with no active position (masked prompts)


def next_token_targets(labels: jax.Array, ignore_index: int = IGNORE_INDEX) -> jax.Array:
    """[B, L] labels aligned with inputs -> targets[t] = labels[t + 1]; last = ignore_index."""
    pad = jnp.full((*labels.shape[:-1], 1), ignore_index, labels.dtype)
    return jnp.concatenate([labels[..., 1:], pad], axis=-1)


def fused_cross_entropy(
    hidden: jax.Array,
    lm_head: jax.Array,
    targets: jax.Array,
    mask: jax.Array | None = None,
    config: CrossEntropyConfig = CrossEntropyConfig(),
    mesh: jax.sharding.Mesh | None = None,
    token_axes: str | tuple[str, ...] = ("data", "fsdp"),
    num_tokens: jax.Array | float | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean CE over active positions (+ z-loss); returns (loss, parts).

    hidden: [..., D] final hidden states; targets: [...] the token each position must predict
    (already shifted, see next_token_targets); mask: [...] active positions (default:
    targets != -100). parts: ce, z_loss (unweighted means), n_tokens. An empty mask gives loss 0
    and zero gradients. With `mesh`, token rows are split over `token_axes` (shard_map).
    An active target outside [0, V) raises (eagerly) or gives NaN (under jit).
    `num_tokens` replaces this call's active count as the denominator: gradient accumulation
    passes the whole batch's count so the microbatches' losses and parts add up to its mean.
    """
    vocab, width = _checks.vocab_and_width(lm_head, config.w_layout)
    lead = hidden.shape[:-1]
    h = _checks.flatten_tokens("hidden", hidden, width)
    t = _checks.flatten_like("targets", targets, lead)
    m = t != IGNORE_INDEX if mask is None else _checks.flatten_like("mask", mask, lead)
    m = m.astype(bool)
    check_labels_concrete(t, m, vocab, "fused_cross_entropy targets")
    n = jnp.sum(m, dtype=jnp.float32)
    denom = n if num_tokens is None else jnp.asarray(num_tokens, jnp.float32)
    a = jnp.where(m, 1.0, 0.0) / jnp.maximum(denom, 1.0)
    spec = EngineSpec(
        has_kl=False,
        strong_grad=False,
        zscore=False,
        tau=1.0,
        w_ce=1.0,
        w_z=float(config.z_loss_weight),
        w_fkl=0.0,
        w_rkl=0.0,
        token_block=config.token_block,
        vocab_block=config.vocab_block,
        matmul_dtype=config.matmul_dtype,
        w_layout=config.w_layout,
        skip_inactive=config.skip_inactive,
    )
    safe_t = jnp.where(m, t, 0)
    args = (h, h, lm_head, safe_t, a, jnp.zeros_like(a))
    if mesh is None:
        loss, sums = fused_engine(spec, *args)
    else:
        loss, sums = sharded_engine(spec, mesh, token_axes, *args)
    sums = jax.lax.stop_gradient(sums)
    return loss, {"ce": sums["ce"], "z_loss": sums["zsq"], "n_tokens": n}
