"""Math-PUMA stage-2 objective, fused: L = lam*(alpha*FKL + (1-alpha)*RKL)*tau^2 + (1-lam)*CE.

weak = the vision-rich sequence (trained), strong = the text-rich one (stop-gradient by default,
as the released code). Inputs are the hidden states at ALIGNED response positions (see
mathjax_vl.losses.positions), so row i of both sides predicts the same response token.

Normalisations (docs/notes/losses.md explains each):
  "token_mean" (default): CE, FKL, RKL are means over aligned tokens; KL at temperature tau,
      CE at temperature 1 (the tau^2 factor "equalises the gradients" of the two, Hinton-style).
  "paper": Eq. 1, 2, 4 literally: every sum over tokens divided by T*V.
  "released": the public code: logits z-scored over the vocabulary (std ddof=1, + 1e-6) before
      the tempered softmax, KL summed over tokens and vocabulary and divided by the number of
      sequences in the batch, tau^2 applied twice; CE is the model's usual token mean.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mathjax_vl.losses import _checks
from mathjax_vl.losses.streaming import (
    EngineSpec,
    check_labels_concrete,
    fused_engine,
    sharded_engine,
)

NORMALIZATIONS = ("token_mean", "paper", "released")


@dataclasses.dataclass(frozen=True)
class AlignmentLossConfig:
    """Paper defaults (alpha 0.2, lam 0.1, tau 1); the released code used alpha 0.5."""

    alpha: float = 0.2  # weight of FKL vs RKL
    lam: float = 0.1  # weight of the KL pair vs the hard CE
    tau: float = 1.0
    normalization: str = "token_mean"
    strong_grad: bool = False  # False: the strong side is a stop-gradient target
    token_block: int = 256
    vocab_block: int | None = None  # None: whole vocabulary per token chunk (no recompute)
    matmul_dtype: str | None = None  # "bfloat16": bf16 operands, float32 accumulation
    w_layout: str = "vd"  # "vd": lm_head [V, D] (tied embeddings); "dv": [D, V]
    skip_inactive: bool = True  # skip token chunks with no aligned position (prompts, padding)

    def __post_init__(self):
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}"
            )
        for name in ("alpha", "lam"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if self.tau <= 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")

    @property
    def kl_scale(self) -> float:
        """tau^2 (paper), tau^4 (released code applies tau^2 twice)."""
        return self.tau**4 if self.normalization == "released" else self.tau**2


def fused_alignment_loss(
    weak_hidden: jax.Array,
    strong_hidden: jax.Array,
    lm_head: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
    config: AlignmentLossConfig = AlignmentLossConfig(),
    num_sequences: int | jax.Array | None = None,
    mesh: jax.sharding.Mesh | None = None,
    token_axes: str | tuple[str, ...] = ("data", "fsdp"),
    num_tokens: jax.Array | float | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(loss, parts) of Eq. 5 without [tokens, vocab] logits.

    weak_hidden, strong_hidden: [..., D] hidden states at aligned positions (row i of each side
    predicts the i-th response token); labels: [...] that token (the weak side's CE target);
    mask: [...] bool, aligned positions to use; num_sequences: batch size, required by the
    "released" normalisation. With `mesh`, the token rows are split over `token_axes` (a
    shard_map; same result as without). parts: loss, ce, fkl, rkl (normalised as configured,
    unweighted), n_tokens. An empty mask gives loss 0 and zero gradients. `num_tokens` replaces
    this call's aligned-token count as the token denominator: gradient accumulation passes the
    whole batch's count (and its num_sequences) so the microbatches' losses add up to its loss.
    """
    cfg = config
    vocab, width = _checks.vocab_and_width(lm_head, cfg.w_layout)
    lead = weak_hidden.shape[:-1]
    if strong_hidden.shape != weak_hidden.shape:
        raise ValueError(
            f"strong_hidden {strong_hidden.shape} and weak_hidden {weak_hidden.shape} must have "
            "the same shape (aligned positions; see mathjax_vl.losses.positions)"
        )
    hw = _checks.flatten_tokens("weak_hidden", weak_hidden, width)
    hs = _checks.flatten_tokens("strong_hidden", strong_hidden, width)
    lab = _checks.flatten_like("labels", labels, lead)
    m = _checks.flatten_like("mask", mask, lead).astype(bool)
    check_labels_concrete(lab, m, vocab, "fused_alignment_loss labels")
    if not cfg.strong_grad:
        hs = jax.lax.stop_gradient(hs)

    n = jnp.sum(m, dtype=jnp.float32)
    denom = jnp.maximum(n if num_tokens is None else jnp.asarray(num_tokens, jnp.float32), 1.0)
    ones = jnp.where(m, 1.0, 0.0)
    a_ce = ones / denom
    if cfg.normalization == "token_mean":
        a_kl = a_ce
    elif cfg.normalization == "paper":
        a_ce = ones / (denom * vocab)
        a_kl = a_ce
    else:
        if num_sequences is None:
            raise ValueError(
                'normalization="released" divides KL by the batch size: pass num_sequences'
            )
        a_kl = ones / jnp.maximum(jnp.asarray(num_sequences, jnp.float32), 1.0)

    spec = EngineSpec(
        has_kl=True,
        strong_grad=cfg.strong_grad,
        zscore=cfg.normalization == "released",
        tau=float(cfg.tau),
        w_ce=1.0 - cfg.lam,
        w_z=0.0,
        w_fkl=cfg.lam * cfg.alpha * cfg.kl_scale,
        w_rkl=cfg.lam * (1.0 - cfg.alpha) * cfg.kl_scale,
        token_block=cfg.token_block,
        vocab_block=cfg.vocab_block,
        matmul_dtype=cfg.matmul_dtype,
        w_layout=cfg.w_layout,
        skip_inactive=cfg.skip_inactive,
    )
    args = (hw, hs, lm_head, jnp.where(m, lab, 0), a_ce, a_kl)
    if mesh is None:
        loss, sums = fused_engine(spec, *args)
    else:
        loss, sums = sharded_engine(spec, mesh, token_axes, *args)
    sums = jax.lax.stop_gradient(sums)
    parts = {"loss": jax.lax.stop_gradient(loss), "ce": sums["ce"], "fkl": sums["fkl"]}
    parts.update(rkl=sums["rkl"], n_tokens=n)
    return loss, parts
