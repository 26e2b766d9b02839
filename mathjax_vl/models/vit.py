"""Pre-LayerNorm transformer encoder blocks shared by SigLIP and CLIP (vision and text towers).

The encoder's layers run under `nn.scan` (parameters stacked on a leading `layers` axis) so compile
time does not grow with depth, with an optional `nn.remat` policy. HF-style "all hidden states"
(embedding output, then every layer's output) are available two ways:
- `feature_layers`: indices into that list (negative allowed, as HF's `vision_feature_layer`); the
  selected states ride in the scan carry, so memory stays one activation per selected layer;
- `collect_all=True`: the scan also emits every layer's output, stacked [L + 1, B, T, D] (parity
  tests, analysis).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from mathjax_vl.models import logical_axes as ax
from mathjax_vl.models.layers import Dense, logical_param
from mathjax_vl.models.precision import to_dtype

Array = jax.Array

_MASK_VALUE = float(jnp.finfo(jnp.float32).min)


def quick_gelu(x: Array) -> Array:
    """x * sigmoid(1.702 x): the activation of the original OpenAI CLIP."""
    return x * jax.nn.sigmoid(1.702 * x)


# HF `hidden_act` / `projector_hidden_act` names -> JAX functions with identical math.
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "quick_gelu": quick_gelu,
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
}


def activation(name: str) -> Callable[[Array], Array]:
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported activation {name!r}; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


# Same knob values as the Qwen2 decoder's `remat_policy`, so one config string serves the VLM.
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "everything_saveable": jax.checkpoint_policies.everything_saveable,
}


def remat_policy(name: str):
    """Maps the config knob to a jax.checkpoint policy; "none" means no rematerialisation."""
    if name not in REMAT_POLICIES:
        raise ValueError(f"unknown remat_policy {name!r}; expected one of {sorted(REMAT_POLICIES)}")
    return REMAT_POLICIES[name]


@flax.struct.dataclass
class EncoderOutput:
    """last_hidden_state: final layer output [B, T, D] (towers may post-normalise it);
    features: the requested `feature_layers`, each [B, T, D];
    hidden_states: [L + 1, B, T, D] when collect_all, else None."""

    last_hidden_state: Array
    features: tuple[Array, ...]
    hidden_states: Array | None


class LayerNorm(nn.Module):
    """LayerNorm with scale and bias (HF nn.LayerNorm); statistics in float32."""

    eps: float = 1e-5
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        d = x.shape[-1]
        scale = logical_param(
            self, "scale", nn.initializers.ones, (d,), (ax.NORM,), self.param_dtype
        )
        bias = logical_param(
            self, "bias", nn.initializers.zeros, (d,), (ax.NORM,), self.param_dtype
        )
        x32 = jnp.asarray(x, jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        y = y * jnp.asarray(scale, jnp.float32) + jnp.asarray(bias, jnp.float32)
        return jnp.asarray(y, self.dtype)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with biases on q/k/v/out (ViT / CLIP / SigLIP, incl. the MAP head).

    x_q [B, Tq, D] attends to x_kv [B, Tk, D]; mask [B|1, 1, Tq, Tk] bool (True = attend) or None.
    Kernels keep heads explicit: q/k/v [embed, heads, head_dim], out [heads, head_dim, embed].
    """

    num_heads: int
    head_dim: int
    seq_axis: str = ax.PATCH
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_q: Array, x_kv: Array, mask: Array | None = None) -> Array:
        kw = dict(use_bias=True, dtype=self.dtype, param_dtype=self.param_dtype)
        heads = (self.num_heads, self.head_dim)
        head_axes = (ax.HEADS, ax.HEAD_DIM)
        q = Dense(heads, (ax.EMBED,), head_axes, name="q_proj", **kw)(x_q)
        k = Dense(heads, (ax.EMBED,), head_axes, name="k_proj", **kw)(x_kv)
        v = Dense(heads, (ax.EMBED,), head_axes, name="v_proj", **kw)(x_kv)
        act_axes = (ax.BATCH, self.seq_axis, ax.HEADS, ax.HEAD_DIM)
        q = nn.with_logical_constraint(q, act_axes)
        k = nn.with_logical_constraint(k, act_axes)
        v = nn.with_logical_constraint(v, act_axes)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) * self.head_dim**-0.5
        if mask is not None:
            scores = jnp.where(mask, scores, _MASK_VALUE)
        probs = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, v)  # [B, Tq, H, Dh]
        out = nn.with_logical_constraint(out, act_axes)
        return Dense((x_q.shape[-1],), head_axes, (ax.EMBED,), name="out_proj", **kw)(out)


class MLP(nn.Module):
    """fc2(act(fc1(x))) with biases (ViT MLP)."""

    hidden_dim: int
    act: str
    seq_axis: str = ax.PATCH
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kw = dict(use_bias=True, dtype=self.dtype, param_dtype=self.param_dtype)
        h = Dense((self.hidden_dim,), (ax.EMBED,), (ax.MLP,), name="fc1", **kw)(x)
        h = activation(self.act)(h)
        h = nn.with_logical_constraint(h, (ax.BATCH, self.seq_axis, ax.MLP))
        return Dense((x.shape[-1],), (ax.MLP,), (ax.EMBED,), name="fc2", **kw)(h)


class EncoderLayer(nn.Module):
    """Pre-LN block: x + attn(ln1(x)); x + mlp(ln2(x)). Written as a scan body.

    carry = (h, feats): feats holds one slot per requested hidden-state index t (0..L); layer
    `idx` produces hidden state idx + 1 and overwrites the slots asking for it.
    """

    num_heads: int
    head_dim: int
    mlp_dim: int
    act: str
    eps: float
    feature_targets: tuple[int, ...] = ()
    collect_all: bool = False
    seq_axis: str = ax.PATCH
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, carry, idx: Array, mask: Array | None):
        h, feats = carry
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        y = LayerNorm(self.eps, name="layer_norm1", **kw)(h)
        y = MultiHeadAttention(
            self.num_heads, self.head_dim, seq_axis=self.seq_axis, name="self_attn", **kw
        )(y, y, mask)
        h = h + y
        y = LayerNorm(self.eps, name="layer_norm2", **kw)(h)
        h = h + MLP(self.mlp_dim, self.act, seq_axis=self.seq_axis, name="mlp", **kw)(y)
        h = nn.with_logical_constraint(h, (ax.BATCH, self.seq_axis, ax.EMBED))
        feats = tuple(jnp.where(idx + 1 == t, h, f) for t, f in zip(self.feature_targets, feats))
        return (h, feats), (h if self.collect_all else None)


def resolve_feature_layers(feature_layers: Sequence[int], num_layers: int) -> tuple[int, ...]:
    """HF hidden-state indices (negative allowed) -> positions 0..L in [embeddings, layer 1..L]."""
    n = num_layers + 1
    out = []
    for layer in feature_layers:
        if not -n <= layer < n:
            raise ValueError(f"feature layer {layer} out of range for {num_layers} layers")
        out.append(layer % n)
    return tuple(out)


class Encoder(nn.Module):
    """`num_layers` EncoderLayers under nn.scan (params stacked on axis 0, logical `layers`)."""

    num_layers: int
    num_heads: int
    head_dim: int
    mlp_dim: int
    act: str
    eps: float
    remat: str = "none"
    scan_unroll: int = 1  # XLA unrolls this many layers per loop iteration (same param layout)
    seq_axis: str = ax.PATCH
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: Array,
        mask: Array | None = None,
        feature_layers: Sequence[int] = (),
        collect_all: bool = False,
    ) -> EncoderOutput:
        targets = resolve_feature_layers(feature_layers, self.num_layers)
        if self.scan_unroll < 1:
            raise ValueError(f"scan_unroll must be >= 1 (layers per step), got {self.scan_unroll}")
        layer_cls = EncoderLayer
        policy = remat_policy(self.remat)
        if self.remat != "none":
            layer_cls = nn.remat(layer_cls, policy=policy, prevent_cse=False)
        scanned = nn.scan(
            layer_cls,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(0, nn.broadcast),
            length=self.num_layers,
            unroll=min(self.scan_unroll, self.num_layers),
            metadata_params={nn.PARTITION_NAME: ax.LAYERS},
        )
        layers = scanned(
            num_heads=self.num_heads,
            head_dim=self.head_dim,
            mlp_dim=self.mlp_dim,
            act=self.act,
            eps=self.eps,
            feature_targets=targets,
            collect_all=collect_all,
            seq_axis=self.seq_axis,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="layers",
        )
        x = jnp.asarray(x, self.dtype)
        feats = tuple(x for _ in targets)  # a target of 0 (embedding output) stays x
        (h, feats), ys = layers((x, feats), jnp.arange(self.num_layers), mask)
        hidden_states = jnp.concatenate([x[None], ys], axis=0) if collect_all else None
        return EncoderOutput(last_hidden_state=h, features=feats, hidden_states=hidden_states)


def encoder_from_config(cfg, seq_axis: str, **kw) -> Encoder:
    """The Encoder a SigLIP/CLIP vision or text config describes (same field names in all four);
    kw: name, dtype, param_dtype. Call inside the parent's compact method."""
    return Encoder(
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        head_dim=cfg.head_dim,
        mlp_dim=cfg.intermediate_size,
        act=cfg.hidden_act,
        eps=cfg.layer_norm_eps,
        remat=cfg.remat_policy,
        scan_unroll=cfg.scan_unroll,
        seq_axis=seq_axis,
        **kw,
    )


class PatchEmbed(nn.Module):
    """Non-overlapping conv patch embedding as a matmul over flattened patches.

    pixels [B, H, W, C] -> [B, (H/p)*(W/p), D]. Kernel [p*p*C, D] with rows ordered (ph, pw, c),
    the flattening of PyTorch's Conv2d weight [D, C, p, p] transposed to [p, p, C, D].
    """

    hidden_size: int
    patch_size: int
    use_bias: bool
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, pixels: Array) -> Array:
        b, h, w, c = pixels.shape
        p = self.patch_size
        # A "valid" strided conv ignores trailing rows/cols that do not fill a patch
        # (so400m/14 at 384 px: 27 patches of 14 = 378 px, the last 6 px are unused).
        gh, gw = h // p, w // p
        x = pixels[:, : gh * p, : gw * p].reshape(b, gh, p, gw, p, c)
        x = x.transpose(0, 1, 3, 2, 4, 5).reshape(b, gh * gw, p * p * c)
        return Dense(
            (self.hidden_size,),
            (ax.CHANNELS,),
            (ax.EMBED,),
            use_bias=self.use_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="patch_embedding",
        )(x)


def dtypes(cfg) -> dict:
    """dtype / param_dtype kwargs from a config carrying string `dtype` and `param_dtype`."""
    return dict(dtype=to_dtype(cfg.dtype), param_dtype=to_dtype(cfg.param_dtype))
