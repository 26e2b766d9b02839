"""The decoder family (Flax Linen): one module, configured by knobs, for Qwen2/2.5, Qwen3,
Llama 2/3.x and Mistral; each numerically matches its HF `transformers` *ForCausalLM.

Knobs (fields of `DecoderConfig`; each architecture module sets its defaults and registers):
  qkv_bias (Qwen2), o_bias / mlp_bias (Llama `attention_bias` / `mlp_bias`), qk_norm (Qwen3: a
  per-head RMSNorm on q and k before RoPE), head_dim (explicit in Qwen3 / Mistral), rope_type
  "default" | "linear" | "llama3" with its factors (Llama 3.x, linear-scaled Llama 2),
  sliding_window (Mistral: a query sees the `sliding_window` newest keys, itself included, in
  training, in the blocked causal path and in the KV cache).

Public API (what the VLM, the losses and decoding build on)
------------------------------------------------------------
    cfg = Qwen2Config(vocab_size=..., hidden_size=..., ...)      # any registered decoder config
    model = Decoder(cfg)                                          # == registry.build(cfg)
    params = model.init(rng, jnp.zeros((1, 8), jnp.int32))["params"]   # boxed (nn.Partitioned)

    # 1. logits (and final normed hidden states) from token ids
    out = model.apply({"params": params}, input_ids, attention_mask=mask)      # DecoderOutput
    out.logits        # [B, T, V] (None when return_logits=False)
    out.hidden_states # [B, T, D] final hidden states AFTER the final RMSNorm
    out.cache         # updated KVCache when a cache was passed, else None

    # 2. VLM path: embed tokens, scatter image features in, run from embeddings
    emb = model.apply({"params": params}, input_ids, method=Decoder.embed)      # [B, T, D]
    out = model.apply({"params": params}, inputs_embeds=emb, attention_mask=mask)

    # 3. fused loss path: hidden states without the [B, T, V] logits
    out = model.apply({"params": params}, input_ids, return_logits=False)
    w = lm_head_weight(params, cfg)   # [V, D]; logits == out.hidden_states @ w.T

    # 4. decoding (see mathjax_vl.decoding): a preallocated cache, prefill then steps
    cache = init_cache(cfg, batch=B, max_len=S)
    out = model.apply({"params": params}, ids, positions=pos, attention_mask=mask, cache=cache)

Arguments of `Decoder.__call__` (exactly one of input_ids [B, T] int / inputs_embeds [B, T, D]):
  positions [B, T] int: RoPE positions; default arange(T) (+ cache.index with a cache), as HF does
    without position_ids. Left-padded rows need explicit positions (mask.cumsum(-1) - 1).
    Packed sequences pass positions that restart at 0 in each segment.
  attention_mask [B, T] (1 = token, 0 = padding): padding keys are never attended to.
  segment_ids [B, T] int: packed sequences; a query attends only to keys of the same segment
    (causally). Not supported together with a cache.
  cache: KVCache from `init_cache`; the T new keys/values are written at slots
    [cache.index, cache.index + T) and cache.index advances by T.

Parameter tree (scan_layers=True; every leaf under "layers" has a leading [L] axis):
  embed_tokens/embedding [V, D]
  layers/input_layernorm/scale [D]        layers/post_attention_layernorm/scale [D]
  layers/self_attn/{q,k,v}_proj/kernel [D, H|KV, Dh], bias [H|KV, Dh] (qkv_bias)
  layers/self_attn/{q,k}_norm/scale [Dh]  (qk_norm)
  layers/self_attn/o_proj/kernel [H, Dh, D], bias [D] (o_bias)
  layers/mlp/{gate,up}_proj/kernel [D, F]  layers/mlp/down_proj/kernel [F, D] (+ bias: mlp_bias)
  norm/scale [D]
  lm_head/embedding [V, D]                 (only when tie_word_embeddings is False)
With scan_layers=False the layers are "layers_0", "layers_1", ... without the [L] axis.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from mathjax_vl.models import attention_kernels, layers
from mathjax_vl.models import logical_axes as ax
from mathjax_vl.models.precision import to_dtype

Array = jax.Array

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "everything_saveable": jax.checkpoint_policies.everything_saveable,
}


ROPE_TYPES = ("default", "linear", "llama3")


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """Architecture (HF field names where HF has one) plus knobs; architectures subclass it only
    to change defaults (see models/qwen2.py, qwen3.py, llama.py, mistral.py)."""

    vocab_size: int = 151936
    hidden_size: int = 1536
    intermediate_size: int = 8960
    num_hidden_layers: int = 28
    num_attention_heads: int = 12
    num_key_value_heads: int = 2
    head_dim: int | None = None  # None -> hidden_size // num_attention_heads
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    max_position_embeddings: int = 32768
    initializer_range: float = 0.02
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None  # HF lists become tuples (hashable)
    pad_token_id: int | None = None
    # Architecture knobs (the family's differences).
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    sliding_window: int | None = None  # keys per query incl. itself; None = full causal
    rope_type: str = "default"  # "default" | "linear" | "llama3"
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0  # llama3
    rope_high_freq_factor: float = 4.0  # llama3
    rope_original_max_position_embeddings: int | None = None  # llama3
    # Our knobs (not part of the HF config).
    scan_layers: bool = True
    scan_unroll: int = 1  # with scan_layers: layers per loop iteration (same param layout)
    remat_policy: str = "none"
    param_dtype: str = "float32"
    dtype: str = "float32"
    # "xla" (einsum reference) or a segment-aware kernel of models.attention_kernels:
    # "dot_product_attention" | "cudnn" (GPU) | "splash" (TPU; interpret mode elsewhere)
    attention_impl: str = "xla"
    # "xla" impl without a KV cache: queries in blocks of this many, each attending only to the
    # keys up to its own end (causal blocks above the diagonal are never computed). 0 = one block.
    attention_query_block: int = 128

    def __post_init__(self):
        if isinstance(self.eos_token_id, list):  # configs are jit-static: must be hashable
            object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))
        impls = ("xla", *attention_kernels.KERNELS)
        if self.attention_impl not in impls:
            raise ValueError(f"attention_impl {self.attention_impl!r} not in {impls}")
        if self.sliding_window is not None and self.attention_impl != "xla":
            raise ValueError(
                f"sliding_window {self.sliding_window} needs attention_impl 'xla' (the kernels "
                f"{sorted(attention_kernels.KERNELS)} take segment ids only, no window)"
            )
        if self.scan_unroll < 1:
            raise ValueError(f"scan_unroll must be >= 1 (layers per step), got {self.scan_unroll}")
        if self.attention_query_block < 0:
            raise ValueError(
                f"attention_query_block must be >= 0, got {self.attention_query_block}"
            )
        if self.remat_policy not in REMAT_POLICIES:
            raise ValueError(f"remat_policy {self.remat_policy!r} not in {sorted(REMAT_POLICIES)}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        if self.rope_type not in ROPE_TYPES:
            raise ValueError(f"rope_type {self.rope_type!r} not in {ROPE_TYPES}")
        if self.rope_type == "llama3" and self.rope_original_max_position_embeddings is None:
            raise ValueError("rope_type 'llama3' needs rope_original_max_position_embeddings")
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ValueError(f"sliding_window must be >= 1 or None, got {self.sliding_window}")
        to_dtype(self.param_dtype)
        to_dtype(self.dtype)

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def rope(self) -> layers.Rope:
        return layers.Rope(
            theta=self.rope_theta,
            type=self.rope_type,
            factor=self.rope_factor,
            low_freq_factor=self.rope_low_freq_factor,
            high_freq_factor=self.rope_high_freq_factor,
            original_max_position_embeddings=self.rope_original_max_position_embeddings,
        )


@flax.struct.dataclass
class KVCache:
    """Preallocated keys/values of every layer plus which slots hold real tokens.

    k, v: [L, B, S, KV, Dh]; valid: [B, S] bool (False for padding and unwritten slots);
    index: int32 scalar, the next slot to write (same for every row: prompts are left-aligned to
    one length by the caller, see mathjax_vl.decoding).
    """

    k: Array
    v: Array
    valid: Array
    index: Array


def init_cache(config: DecoderConfig, batch: int, max_len: int, dtype: Any = None) -> KVCache:
    """An empty cache for `batch` rows of up to `max_len` tokens (prompt + generated)."""
    dtype = to_dtype(dtype or config.dtype)
    kv_heads, head_dim = config.num_key_value_heads, config.dim_per_head
    shape = (config.num_hidden_layers, batch, max_len, kv_heads, head_dim)
    return KVCache(
        k=jnp.zeros(shape, dtype),
        v=jnp.zeros(shape, dtype),
        valid=jnp.zeros((batch, max_len), bool),
        index=jnp.zeros((), jnp.int32),
    )


@flax.struct.dataclass
class DecoderOutput:
    logits: Array | None  # [B, T, V]
    hidden_states: Array  # [B, T, D], after the final norm
    cache: KVCache | None


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then + mlp(norm(x)). Returns (x, layer kv cache)."""

    config: DecoderConfig

    @nn.compact
    def __call__(self, x, positions, mask, kv_cache, cache_index):
        cfg = self.config
        dtype, pdtype = to_dtype(cfg.dtype), to_dtype(cfg.param_dtype)
        init = nn.initializers.normal(stddev=cfg.initializer_range)
        x = nn.with_logical_constraint(x, (ax.BATCH, ax.LENGTH, ax.EMBED))
        h = layers.RMSNorm(cfg.rms_norm_eps, dtype, pdtype, name="input_layernorm")(x)
        h, kv_cache = layers.Attention(
            num_heads=cfg.num_attention_heads,
            num_kv_heads=cfg.num_key_value_heads,
            head_dim=cfg.dim_per_head,
            rope_theta=cfg.rope_theta,
            qkv_bias=cfg.qkv_bias,
            o_bias=cfg.o_bias,
            qk_norm_eps=cfg.rms_norm_eps if cfg.qk_norm else None,
            rope=cfg.rope,
            sliding_window=cfg.sliding_window,
            dtype=dtype,
            param_dtype=pdtype,
            kernel_init=init,
            impl=cfg.attention_impl,
            query_block=cfg.attention_query_block,
            name="self_attn",
        )(h, positions, mask, kv_cache, cache_index)
        x = x + h
        h = layers.RMSNorm(cfg.rms_norm_eps, dtype, pdtype, name="post_attention_layernorm")(x)
        h = layers.SwiGLU(cfg.intermediate_size, dtype, pdtype, init, cfg.mlp_bias, name="mlp")(h)
        x = x + h
        x = nn.with_logical_constraint(x, (ax.BATCH, ax.LENGTH, ax.EMBED))
        return x, kv_cache


class Decoder(nn.Module):
    """The causal LM of every registered decoder kind (call contract: module docstring)."""

    config: DecoderConfig

    def setup(self):
        cfg = self.config
        dtype, pdtype = to_dtype(cfg.dtype), to_dtype(cfg.param_dtype)
        init = nn.initializers.normal(stddev=cfg.initializer_range)
        self.embed_tokens = layers.Embed(cfg.vocab_size, cfg.hidden_size, dtype, pdtype, init)
        layer_cls = DecoderLayer
        policy = REMAT_POLICIES[cfg.remat_policy]
        if cfg.remat_policy != "none":
            layer_cls = nn.remat(layer_cls, policy=policy, prevent_cse=not cfg.scan_layers)
        if cfg.scan_layers:
            self.layers = nn.scan(
                layer_cls,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                in_axes=(nn.broadcast, nn.broadcast, 0, nn.broadcast),
                length=cfg.num_hidden_layers,
                unroll=min(cfg.scan_unroll, cfg.num_hidden_layers),
                metadata_params={nn.PARTITION_NAME: ax.LAYERS},
            )(cfg)
        else:
            self.layers = [layer_cls(cfg) for _ in range(cfg.num_hidden_layers)]
        self.norm = layers.RMSNorm(cfg.rms_norm_eps, dtype, pdtype)
        if not cfg.tie_word_embeddings:
            self.lm_head = layers.Embed(cfg.vocab_size, cfg.hidden_size, dtype, pdtype, init)

    def embed(self, input_ids: Array) -> Array:
        """Token ids [B, T] -> embeddings [B, T, D] (no scaling; none of the family scales)."""
        e = self.embed_tokens(input_ids)
        return nn.with_logical_constraint(e, (ax.BATCH, ax.LENGTH, ax.EMBED))

    def logits(self, hidden_states: Array) -> Array:
        """Final normed hidden states [B, T, D] -> logits [B, T, V]."""
        head = self.embed_tokens if self.config.tie_word_embeddings else self.lm_head
        logits = head.attend(hidden_states)
        return nn.with_logical_constraint(logits, (ax.BATCH, ax.LENGTH, ax.VOCAB))

    def __call__(
        self,
        input_ids: Array | None = None,
        positions: Array | None = None,
        attention_mask: Array | None = None,
        segment_ids: Array | None = None,
        *,
        inputs_embeds: Array | None = None,
        cache: KVCache | None = None,
        return_logits: bool = True,
    ) -> DecoderOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        x = self.embed(input_ids) if input_ids is not None else inputs_embeds
        x = jnp.asarray(x, to_dtype(self.config.dtype))
        b, t = x.shape[:2]
        offset = cache.index if cache is not None else 0
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32) + offset, (b, t))
        new_valid = None
        if cache is None and self.config.attention_impl in attention_kernels.KERNELS:
            mask = attention_kernels.segment_mask((b, t), attention_mask, segment_ids)
        elif cache is None:
            idx = jnp.arange(t)
            mask = layers.make_attention_mask(
                idx, idx, attention_mask, segment_ids, segment_ids, self.config.sliding_window
            )
        else:
            if segment_ids is not None:
                raise ValueError("segment_ids are not supported together with a KV cache")
            tokens_valid = jnp.ones((b, t), bool) if attention_mask is None else attention_mask
            new_valid = jax.lax.dynamic_update_slice(
                cache.valid, tokens_valid.astype(bool), (0, cache.index)
            )
            slots = jnp.arange(cache.valid.shape[1])
            mask = layers.make_attention_mask(
                cache.index + jnp.arange(t), slots, new_valid, window=self.config.sliding_window
            )

        kv = None if cache is None else (cache.k, cache.v)
        index = None if cache is None else cache.index
        if self.config.scan_layers:
            x, kv = self.layers(x, positions, mask, kv, index)
        else:
            new_k, new_v = [], []
            for i, layer in enumerate(self.layers):
                layer_kv = None if kv is None else (kv[0][i], kv[1][i])
                x, layer_kv = layer(x, positions, mask, layer_kv, index)
                if layer_kv is not None:
                    new_k.append(layer_kv[0])
                    new_v.append(layer_kv[1])
            kv = None if cache is None else (jnp.stack(new_k), jnp.stack(new_v))

        hidden = self.norm(x)
        hidden = nn.with_logical_constraint(hidden, (ax.BATCH, ax.LENGTH, ax.EMBED))
        new_cache = None
        if cache is not None:
            new_cache = KVCache(k=kv[0], v=kv[1], valid=new_valid, index=cache.index + t)
        logits = self.logits(hidden) if return_logits else None
        if not return_logits and not self.config.tie_word_embeddings and self.is_initializing():
            # An untied head must exist even when init skips the logits (the fused-loss tasks
            # read it with lm_head_weight); touching one position creates it.
            self.logits(hidden[:, :1])
        return DecoderOutput(logits=logits, hidden_states=hidden, cache=new_cache)


def _inner(params: Any) -> Any:
    params = nn.meta.unbox(params)
    return params["params"] if "params" in params else params


def lm_head_weight(params: Any, config: DecoderConfig) -> Array:
    """The LM-head matrix, layout [V, D] (logits = hidden @ W.T); tied -> the embedding table."""
    p = _inner(params)
    key = "embed_tokens" if config.tie_word_embeddings else "lm_head"
    return p[key]["embedding"]


def embedding_table(params: Any) -> Array:
    """The input token table [V, D]."""
    return _inner(params)["embed_tokens"]["embedding"]
