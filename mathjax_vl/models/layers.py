"""Decoder building blocks shared by the text models: RMSNorm, RoPE, GQA attention, SwiGLU MLP.

Every parameter is created through `nn.with_logical_partitioning` and every main activation passes
through `nn.with_logical_constraint`, so a model never names a mesh axis: the trainer maps the
logical names of mathjax_vl.models.logical_axes to mesh axes with a rules table. Without a rules
context the constraints are no-ops, which keeps single-device use and tests simple.

Kernels keep heads as explicit axes (q: [embed, heads, head_dim], o: [heads, head_dim, embed]) so
heads and head_dim can be sharded independently; the HF converters reshape to and from PyTorch's
flat [out, in] matrices.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mathjax_vl.models import attention_kernels
from mathjax_vl.models import logical_axes as ax

Array = jax.Array

# A finite "minus infinity": a fully masked row (a padding query) then gives a uniform softmax
# instead of NaNs, and its output is ignored anyway.
_MASK_VALUE = float(jnp.finfo(jnp.float32).min)
MAX_QUERY_BLOCKS = 16


def logical_param(
    module: nn.Module,
    name: str,
    init: nn.initializers.Initializer,
    shape: Sequence[int],
    axes: Sequence[str],
    dtype: jnp.dtype,
) -> Array:
    """Creates a parameter annotated with logical axis names (one name per dimension)."""
    if len(axes) != len(shape):
        raise ValueError(f"param {name}: {len(axes)} axis names for shape {tuple(shape)}")
    return module.param(name, nn.with_logical_partitioning(init, tuple(axes)), tuple(shape), dtype)


class Dense(nn.Module):
    """x[..., *in] @ kernel[*in, *out] (+ bias[*out]), contracting the last `len(in_axes)` dims.

    features: output shape (e.g. (heads, head_dim)); in_axes/out_axes: logical names of the
    contracted input dims and of the output dims.
    """

    features: tuple[int, ...]
    in_axes: tuple[str, ...]
    out_axes: tuple[str, ...]
    use_bias: bool = False
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    kernel_init: nn.initializers.Initializer = nn.initializers.normal(stddev=0.02)

    @nn.compact
    def __call__(self, x: Array) -> Array:
        n_in = len(self.in_axes)
        in_shape = x.shape[-n_in:]
        kernel = logical_param(
            self,
            "kernel",
            self.kernel_init,
            (*in_shape, *self.features),
            (*self.in_axes, *self.out_axes),
            self.param_dtype,
        )
        x = jnp.asarray(x, self.dtype)
        kernel = jnp.asarray(kernel, self.dtype)
        contract_x = tuple(range(x.ndim - n_in, x.ndim))
        y = jax.lax.dot_general(x, kernel, ((contract_x, tuple(range(n_in))), ((), ())))
        if self.use_bias:
            bias = logical_param(
                self, "bias", nn.initializers.zeros, self.features, self.out_axes, self.param_dtype
            )
            y = y + jnp.asarray(bias, self.dtype)
        return y


class Embed(nn.Module):
    """Token table [vocab, embed]: `__call__` looks rows up, `attend` scores x against all rows.

    Used for the input embedding and, with its own table, for an untied LM head, so the LM-head
    weight always has the layout [V, D] (HF's lm_head.weight layout).
    """

    num_embeddings: int
    features: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    embedding_init: nn.initializers.Initializer = nn.initializers.normal(stddev=0.02)

    def setup(self):
        self.embedding = logical_param(
            self,
            "embedding",
            self.embedding_init,
            (self.num_embeddings, self.features),
            (ax.VOCAB, ax.EMBED),
            self.param_dtype,
        )

    def __call__(self, ids: Array) -> Array:
        """ids [B, T] int -> [B, T, D]."""
        return jnp.take(jnp.asarray(self.embedding, self.dtype), ids, axis=0)

    def attend(self, x: Array) -> Array:
        """x [B, T, D] -> scores [B, T, V] = x @ table.T."""
        table = jnp.asarray(self.embedding, self.dtype)
        return jnp.einsum("btd,vd->btv", jnp.asarray(x, self.dtype), table)


class RMSNorm(nn.Module):
    """y = scale * x / sqrt(mean(x^2) + eps); statistics in float32 (as HF Qwen2RMSNorm)."""

    eps: float = 1e-6
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        scale = logical_param(
            self, "scale", nn.initializers.ones, (x.shape[-1],), (ax.NORM,), self.param_dtype
        )
        x32 = jnp.asarray(x, jnp.float32)
        var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        y = jnp.asarray(x32 * jax.lax.rsqrt(var + self.eps), self.dtype)
        return y * jnp.asarray(scale, self.dtype)


def rope_inv_freq(head_dim: int, theta: float) -> Array:
    """Inverse frequencies theta^(-2i/d), i < d/2, in float32 (HF 'default' rope)."""
    exponents = jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim
    return 1.0 / (theta**exponents)


@dataclasses.dataclass(frozen=True)
class Rope:
    """RoPE frequencies: HF rope_type "default", "linear" (positions / factor) or "llama3"
    (Llama 3.1's wavelength-dependent interpolation); the attention scaling is 1 for all three."""

    theta: float = 10000.0
    type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int | None = None

    def inv_freq(self, head_dim: int) -> Array:
        """[head_dim // 2] float32, as HF's ROPE_INIT_FUNCTIONS[type] computes it."""
        inv = rope_inv_freq(head_dim, self.theta)
        if self.type == "default":
            return inv
        if self.type == "linear":
            return inv / self.factor
        if self.type == "llama3":
            old = float(self.original_max_position_embeddings)
            low_wavelen = old / self.low_freq_factor
            high_wavelen = old / self.high_freq_factor
            wavelen = 2 * math.pi / inv
            scaled = jnp.where(wavelen > low_wavelen, inv / self.factor, inv)
            smooth = (old / wavelen - self.low_freq_factor) / (
                self.high_freq_factor - self.low_freq_factor
            )
            smoothed = (1 - smooth) * scaled / self.factor + smooth * scaled
            medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
            return jnp.where(medium, smoothed, scaled)
        raise ValueError(f"unknown rope type {self.type!r}; expected default, linear, llama3")


def apply_rope(x: Array, positions: Array, theta: float, inv_freq: Array | None = None) -> Array:
    """Rotates x [B, T, N, Dh] by integer positions [B, T] ("rotate half" layout, as HF Qwen2).

    The first and second halves of head_dim form the (real, imaginary) pairs, not interleaved
    even/odd dims; this is what HF checkpoints expect. inv_freq [Dh // 2]: scaled frequencies
    (Rope.inv_freq); None = default RoPE with `theta`.
    """
    head_dim = x.shape[-1]
    if inv_freq is None:
        inv_freq = rope_inv_freq(head_dim, theta)
    freqs = jnp.asarray(positions, jnp.float32)[..., None] * inv_freq
    emb = jnp.concatenate([freqs, freqs], axis=-1)  # [B, T, Dh]
    cos = jnp.cos(emb)[:, :, None, :].astype(x.dtype)  # [B, T, 1, Dh]
    sin = jnp.sin(emb)[:, :, None, :].astype(x.dtype)
    x1, x2 = jnp.split(x, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return x * cos + rotated * sin


def make_attention_mask(
    q_index: Array,
    k_index: Array,
    k_valid: Array | None = None,
    q_segment_ids: Array | None = None,
    k_segment_ids: Array | None = None,
    window: int | None = None,
) -> Array:
    """Boolean mask [B, 1, Tq, Tk]: causal on slot indices, key padding, same-segment only, and
    with `window` only the `window` newest keys (the query's own included; HF sliding window).

    q_index [Tq] / k_index [Tk]: slot of each query / key in the sequence (or KV cache), so
    causality holds in cache coordinates; k_valid [B, Tk]: False for padding or empty cache slots;
    segment ids [B, Tq] / [B, Tk]: packed sequences attend only within their own segment.
    """
    diff = q_index[:, None] - k_index[None, :]  # [Tq, Tk]
    causal = diff >= 0
    if window is not None:
        causal = causal & (diff < window)
    mask = causal[None, None]  # [1, 1, Tq, Tk]
    if k_valid is not None:
        mask = mask & k_valid[:, None, None, :].astype(bool)
    if q_segment_ids is not None:
        seg = q_segment_ids[:, :, None] == k_segment_ids[:, None, :]  # [B, Tq, Tk]
        mask = mask & seg[:, None]
    return mask


class Attention(nn.Module):
    """Grouped-query self-attention with RoPE and an optional KV cache; knobs: q/k/v biases, an
    o bias, a per-head q/k RMSNorm before RoPE (qk_norm_eps set: Qwen3), scaled RoPE, and a
    sliding window (the mask carries it; the blocked path also skips key blocks outside it).

    Query head h uses key/value head h // (num_heads // num_kv_heads), the grouping HF's
    repeat_kv implies; K/V are never materialised per query head.

    impl: "xla" (explicit einsum, float32 softmax; the parity reference) or a kernel of
    models.attention_kernels ("dot_product_attention", "cudnn", "splash"), which gets the
    segment ids (mask = attention_kernels.SegmentMask) instead of a dense mask. With a KV cache
    (decoding) every impl takes the dense-mask path below.

    query_block (xla impl, no KV cache, where the mask is causal in token order): queries run in
    blocks that attend only to keys up to the block's end, so the all-masked blocks above the
    diagonal cost neither FLOPs nor [T, S] score memory. At most MAX_QUERY_BLOCKS blocks (larger
    blocks for long sequences bound the unrolled graph); 0 = one block.
    """

    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    qkv_bias: bool = True
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    kernel_init: nn.initializers.Initializer = nn.initializers.normal(stddev=0.02)
    impl: str = "xla"
    query_block: int = 0
    o_bias: bool = False
    qk_norm_eps: float | None = None  # set: RMSNorm over head_dim on q and k (Qwen3)
    rope: Rope | None = None  # None: default RoPE with rope_theta
    sliding_window: int | None = None

    @nn.compact
    def __call__(
        self,
        x: Array,
        positions: Array,
        mask: Array,
        kv_cache: tuple[Array, Array] | None = None,
        cache_index: Array | None = None,
    ) -> tuple[Array, tuple[Array, Array] | None]:
        """x [B, T, D]; positions [B, T]; mask [B|1, 1, T, S] bool, or a SegmentMask for the
        kernels (no cache).

        kv_cache: this layer's (k, v), each [B, S, KV, Dh]; the T new keys/values are written at
        slots [cache_index, cache_index + T) and attention runs over all S slots (the mask hides
        empty ones). Returns (output [B, T, D], updated cache or None).
        """
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} not a multiple of {self.num_kv_heads}")
        dense = lambda feats, out_axes, name, bias: Dense(
            feats,
            (ax.EMBED,),
            out_axes,
            use_bias=bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.kernel_init,
            name=name,
        )
        q_feats = (self.num_heads, self.head_dim)
        q = dense(q_feats, (ax.HEADS, ax.HEAD_DIM), "q_proj", self.qkv_bias)(x)
        kv_feats = (self.num_kv_heads, self.head_dim)
        kv_axes = (ax.KV_HEADS, ax.HEAD_DIM)
        k = dense(kv_feats, kv_axes, "k_proj", self.qkv_bias)(x)
        v = dense(kv_feats, kv_axes, "v_proj", self.qkv_bias)(x)
        q = nn.with_logical_constraint(q, (ax.BATCH, ax.LENGTH, ax.HEADS, ax.HEAD_DIM))
        k = nn.with_logical_constraint(k, (ax.BATCH, ax.LENGTH, ax.KV_HEADS, ax.HEAD_DIM))
        v = nn.with_logical_constraint(v, (ax.BATCH, ax.LENGTH, ax.KV_HEADS, ax.HEAD_DIM))
        if self.qk_norm_eps is not None:
            norm = lambda name: RMSNorm(self.qk_norm_eps, self.dtype, self.param_dtype, name=name)
            q, k = norm("q_norm")(q), norm("k_norm")(k)
        inv_freq = None if self.rope is None else self.rope.inv_freq(self.head_dim)
        q = apply_rope(q, positions, self.rope_theta, inv_freq)
        k = apply_rope(k, positions, self.rope_theta, inv_freq)

        new_cache = None
        if kv_cache is not None:
            k_all, v_all = kv_cache
            start = (0, cache_index, 0, 0)
            k_all = jax.lax.dynamic_update_slice(k_all, k.astype(k_all.dtype), start)
            v_all = jax.lax.dynamic_update_slice(v_all, v.astype(v_all.dtype), start)
            new_cache = (k_all, v_all)
            k, v = k_all.astype(self.dtype), v_all.astype(self.dtype)

        if isinstance(mask, attention_kernels.SegmentMask):  # the attention_impl dispatch point
            kernel = attention_kernels.get(self.impl)
            out = kernel(q, k, v, mask.segment_ids, scale=self.head_dim**-0.5)
        elif self.impl == "dot_product_attention":
            out = jax.nn.dot_product_attention(q, k, v, mask=mask, scale=self.head_dim**-0.5)
        elif self.impl == "xla" and kv_cache is None:
            out = self._blocked_causal_attention(q, k, v, mask)
        elif self.impl == "xla" or self.impl in attention_kernels.KERNELS:
            out = self._xla_attention(q, k, v, mask)
        else:
            raise ValueError(f"unknown attention impl {self.impl!r}")
        out = nn.with_logical_constraint(out, (ax.BATCH, ax.LENGTH, ax.HEADS, ax.HEAD_DIM))
        out = Dense(
            (x.shape[-1],),
            (ax.HEADS, ax.HEAD_DIM),
            (ax.EMBED,),
            use_bias=self.o_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.kernel_init,
            name="o_proj",
        )(out)
        return out, new_cache

    def _blocked_causal_attention(self, q: Array, k: Array, v: Array, mask: Array) -> Array:
        """Self-attention over T tokens whose mask is causal in token order (no cache): query
        block [a, b) needs keys [0, b) only, or [a - window + 1, b) with a sliding window.
        Same shapes as _xla_attention."""
        t = q.shape[1]
        blk = max(self.query_block, -(-t // MAX_QUERY_BLOCKS)) if self.query_block else t
        qh, kh, vh = self._head_major(q, k, v)
        outs = []
        for a in range(0, t, blk):
            b = min(a + blk, t)
            lo = 0 if self.sliding_window is None else max(0, a - self.sliding_window + 1)
            m = mask[:, :, a:b, lo:b]  # [B|1, 1, b - a, b - lo]
            outs.append(self._attend(qh[:, :, :, a:b], kh[:, :, lo:b], vh[:, :, lo:b], m))
        return self._token_major(jnp.concatenate(outs, axis=3))

    def _xla_attention(self, q: Array, k: Array, v: Array, mask: Array) -> Array:
        """q [B, T, H, Dh], k/v [B, S, KV, Dh], mask [B|1, 1, T, S] -> [B, T, H, Dh]."""
        qh, kh, vh = self._head_major(q, k, v)
        return self._token_major(self._attend(qh, kh, vh, mask))

    def _head_major(self, q: Array, k: Array, v: Array) -> tuple[Array, Array, Array]:
        """One transpose per layer (not per query block): q -> [B, KV, G, T, Dh] (query head
        h = kv * G + g, HF's repeat_kv grouping), k/v -> [B, KV, S, Dh]."""
        b, t = q.shape[:2]
        groups = self.num_heads // self.num_kv_heads
        qh = q.reshape(b, t, self.num_kv_heads, groups, self.head_dim).transpose(0, 2, 3, 1, 4)
        return qh, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)

    def _token_major(self, out: Array) -> Array:
        """[B, KV, G, T, Dh] -> [B, T, H, Dh]."""
        b, _, _, t, _ = out.shape
        return out.transpose(0, 3, 1, 2, 4).reshape(b, t, self.num_heads, self.head_dim)

    def _attend(self, qh: Array, kh: Array, vh: Array, mask: Array) -> Array:
        """qh [B, KV, G, T, Dh], kh/vh [B, KV, S, Dh], mask [B|1, 1, T, S] -> [B, KV, G, T, Dh];
        float32 scores and softmax."""
        scores = jnp.einsum("bkgtd,bksd->bkgts", qh, kh).astype(jnp.float32)
        scores = scores * (self.head_dim**-0.5)
        scores = jnp.where(mask[:, :, None], scores, _MASK_VALUE)  # mask [B, 1, 1, T, S]
        probs = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        return jnp.einsum("bkgts,bksd->bkgtd", probs, vh)


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) (Qwen2 / Llama MLP); biases only with use_bias (Llama
    mlp_bias)."""

    hidden_dim: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    kernel_init: nn.initializers.Initializer = nn.initializers.normal(stddev=0.02)
    use_bias: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kw = dict(
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.kernel_init,
            use_bias=self.use_bias,
        )
        gate = Dense((self.hidden_dim,), (ax.EMBED,), (ax.MLP,), name="gate_proj", **kw)(x)
        up = Dense((self.hidden_dim,), (ax.EMBED,), (ax.MLP,), name="up_proj", **kw)(x)
        h = nn.silu(gate) * up
        h = nn.with_logical_constraint(h, (ax.BATCH, ax.LENGTH, ax.MLP))
        return Dense((x.shape[-1],), (ax.MLP,), (ax.EMBED,), name="down_proj", **kw)(h)
