"""Config -> mathjax_vl.losses fused objectives (CE and the Math-PUMA KL alignment)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections


def _matmul_dtype(cfg: ml_collections.ConfigDict) -> str | None:
    return cfg.get("matmul_dtype") or None


def fused_ce(
    hidden: jax.Array,
    weight: jax.Array,
    targets: jax.Array,
    mask: jax.Array,
    cfg: ml_collections.ConfigDict,
    num_tokens: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    from mathjax_vl.losses.cross_entropy import CrossEntropyConfig, fused_cross_entropy

    ce_cfg = CrossEntropyConfig(
        z_loss_weight=float(cfg.get("z_loss", 0.0)),
        token_block=int(cfg.get("token_block", 256)),
        vocab_block=cfg.get("vocab_block") or None,
        matmul_dtype=_matmul_dtype(cfg),
        skip_inactive=bool(cfg.get("skip_inactive", True)),
    )
    loss, parts = fused_cross_entropy(
        hidden, weight, targets, mask.astype(bool), ce_cfg, num_tokens=num_tokens
    )
    out = {"ce": parts["ce"], "tokens": parts["n_tokens"]}
    if ce_cfg.z_loss_weight:
        out["z_loss"] = parts["z_loss"]
    return loss, out


def alignment_config(cfg: ml_collections.ConfigDict):
    from mathjax_vl.losses.alignment_loss import AlignmentLossConfig

    return AlignmentLossConfig(
        alpha=float(cfg.get("alpha", 0.2)),
        lam=float(cfg.get("lam", 0.1)),
        tau=float(cfg.get("tau", 1.0)),
        normalization=cfg.get("normalization", "token_mean"),
        strong_grad=bool(cfg.get("strong_grad", False)),
        token_block=int(cfg.get("token_block", 256)),
        vocab_block=cfg.get("vocab_block") or None,
        matmul_dtype=_matmul_dtype(cfg),
        skip_inactive=bool(cfg.get("skip_inactive", True)),
    )


def fused_kl(weak, strong, weight, labels, mask, cfg, num_sequences, num_tokens=None):
    from mathjax_vl.losses.alignment_loss import fused_alignment_loss

    loss, parts = fused_alignment_loss(
        weak,
        strong,
        weight,
        labels,
        mask.astype(bool),
        alignment_config(cfg),
        num_sequences,
        num_tokens=num_tokens,
    )
    return loss, {
        "ce": parts["ce"],
        "fkl": parts["fkl"],
        "rkl": parts["rkl"],
        "tokens": parts["n_tokens"].astype(jnp.float32),
    }
