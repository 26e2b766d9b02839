"""Pieces shared by the objectives: building models from config, next-token targets, CE.

Batch convention for token objectives (what mathjax_vl.data.pipelines produces):
  input_ids [B, T] int32, attention_mask [B, T] (1 = token), labels [B, T] int32 aligned with
  input_ids (labels[t] is the token at t, or -100 where no loss is taken: prompt, padding, image
  placeholders); optional positions [B, T] and segment_ids [B, T] for packed rows. The loss at
  position t predicts labels[t + 1].
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from mathjax_vl.losses.constants import IGNORE_INDEX

IGNORE = IGNORE_INDEX


def shifted_targets(labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """labels [B, T] -> (targets [B, T], mask [B, T] float32): targets[t] = labels[t + 1]."""
    targets = jnp.concatenate(
        [labels[:, 1:], jnp.full((labels.shape[0], 1), IGNORE, labels.dtype)], axis=1
    )
    mask = (targets != IGNORE).astype(jnp.float32)
    return jnp.where(targets == IGNORE, 0, targets), mask


def target_count(labels: jax.Array) -> jax.Array:
    """Loss tokens of a [B, T] labels batch (after the shift): the token-mean denominator."""
    return shifted_targets(labels)[1].sum()


def token_normalizers(labels: jax.Array) -> dict[str, jax.Array]:
    """`Task.loss_normalizers` of the next-token objectives."""
    return {"tokens": target_count(labels)}


def naive_token_ce(
    hidden: jax.Array,
    weight: jax.Array,
    targets: jax.Array,
    mask: jax.Array,
    num_tokens: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean CE over masked tokens from full logits (hidden [N, D] @ weight[V, D].T in float32).

    The reference implementation and the fallback for small vocabularies; an empty mask gives 0.
    `num_tokens` (default: mask.sum()) is the denominator; accumulation passes the full batch's.
    """
    logits = jnp.einsum("nd,vd->nv", hidden, weight, preferred_element_type=jnp.float32)
    logz = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    nll = (logz - picked) * mask
    count = mask.sum()
    denom = count if num_tokens is None else jnp.asarray(num_tokens, jnp.float32)
    loss = nll.sum() / jnp.maximum(denom, 1.0)
    return loss, {"ce": loss, "tokens": count}


def token_ce(
    hidden: jax.Array,
    weight: jax.Array,
    targets: jax.Array,
    mask: jax.Array,
    cfg: ml_collections.ConfigDict,
    normalizers: dict[str, jax.Array] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Next-token CE on flattened tokens; `cfg.impl` = 'fused' (mathjax_vl.losses, never builds
    [N, V]) or 'naive' (full logits). hidden [N, D], weight [V, D], targets/mask [N].
    `normalizers` (from token_normalizers on the full batch) fixes the token denominator."""
    impl = cfg.get("impl", "fused")
    num_tokens = None if normalizers is None else normalizers["tokens"]
    if impl == "naive":
        return naive_token_ce(hidden, weight, targets, mask, num_tokens)
    if impl != "fused":
        raise ValueError(f"loss.impl must be 'fused' or 'naive', got {impl!r}")
    from mathjax_vl.train.tasks import fused_adapter

    return fused_adapter.fused_ce(hidden, weight, targets, mask, cfg, num_tokens)


def flatten_tokens(x: jax.Array) -> jax.Array:
    """[B, T, ...] -> [B*T, ...]."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def decoder_config(cfg: ml_collections.ConfigDict, kind: str | None = None) -> Any:
    """The decoder config of `model.decoder` (any registered decoder kind; models.build)."""
    from mathjax_vl.models.build import decoder_config as build

    return build(cfg, kind)


qwen2_config = decoder_config  # historical name


def decoder_train_flops(cfg: Any, seq_len: int) -> float:
    """Model FLOPs of one training row through the decoder (fwd + bwd = 3x forward):
    2 * matmul params per token, plus attention scores/values 4 * T * D_attn per token per layer,
    plus the LM head."""
    d, f, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    hd = cfg.dim_per_head
    q = cfg.num_attention_heads * hd
    kv = cfg.num_key_value_heads * hd
    per_layer = d * q + 2 * d * kv + q * d + 3 * d * f
    forward = 2 * seq_len * (layers * per_layer + d * cfg.vocab_size)
    forward += layers * 4 * seq_len * seq_len * q
    return 3.0 * forward


def vision_train_flops(v: Any, images: int) -> float:
    """Same accounting for a ViT tower over `images` images."""
    n = v.num_patches + int(getattr(v, "has_class_token", False))
    d, f, layers = v.hidden_size, v.intermediate_size, v.num_layers
    per_layer = 4 * d * d + 2 * d * f
    patch = v.patch_size * v.patch_size * v.num_channels * d
    forward = 2 * n * (layers * per_layer + patch) + layers * 4 * n * n * d
    return 3.0 * images * forward


def vlm_train_flops(cfg: Any, seq_len: int, images: int) -> float:
    """Decoder + towers + projector. A composite without `projector` (DeepSeek-VL) counts its
    aligner as a two-layer MLP into the text width; SAM's windowed attention is counted as
    global (an upper bound)."""
    p = getattr(cfg, "projector", None)
    d_in, inner = (
        (p.input_dim, p.inner_dim) if p else (cfg.vision.hidden_size, cfg.text.hidden_size)
    )
    proj = 3.0 * 2 * images * cfg.image_seq_length * (d_in * inner * 2)
    towers = [cfg.vision] + [t for t in (getattr(cfg, "high_res", None),) if t is not None]
    vision = sum(vision_train_flops(t, images) for t in towers)
    return decoder_train_flops(cfg.text, seq_len) + vision + proj
