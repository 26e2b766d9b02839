"""SAM ViT image encoder (HF `SamVisionModel`, ViTDet-style): DeepSeek-VL's high-resolution tower.

Conv patch embedding (with bias) + a learned absolute position grid -> pre-LN blocks whose
attention is windowed (non-overlapping `window_size` windows, the grid zero-padded to a multiple)
except at `global_attn_indexes`, all with decomposed relative positions (MViTv2: a learned table
per axis, bias[q, k] = q . R_h[qh - kh] + q . R_w[qw - kw]) -> a conv neck (1x1 conv, LayerNorm2d,
3x3 conv, LayerNorm2d; no biases). Activations keep the spatial grid, NHWC [B, h, w, D].

Layers run as a Python loop (`layers_{i}`), not a scan: windowed and global blocks have different
relative-position table shapes. Pixels are NHWC [B, H, W, C], rescaled and normalised.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from mathjax_vl.models import logical_axes as ax
from mathjax_vl.models import registry
from mathjax_vl.models.layers import Dense, logical_param
from mathjax_vl.models.vit import LayerNorm, PatchEmbed, activation, dtypes, remat_policy

Array = jax.Array

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class SamVisionConfig:
    hidden_size: int = 768
    intermediate_size: int = 3072  # HF mlp_dim
    num_layers: int = 12
    num_heads: int = 12
    image_size: int = 1024
    patch_size: int = 16
    num_channels: int = 3
    output_channels: int = 256  # the neck's width
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu"
    qkv_bias: bool = True
    use_abs_pos: bool = True
    use_rel_pos: bool = True
    # preprocessing of DeepSeek-VL's high-resolution input (its HF processor's high_res_image_*)
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat_policy: str = "none"

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} not divisible by {self.num_heads}")
        bad = [i for i in self.global_attn_indexes if not 0 <= i < self.num_layers]
        if bad:
            raise ValueError(f"global_attn_indexes {bad} outside 0..{self.num_layers - 1}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid**2

    @property
    def has_class_token(self) -> bool:
        return False

    def layer_window(self, i: int) -> int:
        """0 = global attention over the whole grid, else the window side."""
        return 0 if i in self.global_attn_indexes else self.window_size


@flax.struct.dataclass
class SamOutput:
    """last_hidden_state: the neck's output [B, h, w, output_channels];
    features: the requested block outputs (HF hidden_states[k], 0 = embeddings) [B, h, w, D]."""

    last_hidden_state: Array
    features: tuple[Array, ...]


def conv2d(x: Array, kernel: Array, kh: int, stride: int = 1, padding: int = 0) -> Array:
    """NHWC conv with a [kh*kh*C, D] kernel (rows ordered kh, kw, c: hf.leaves' "conv" layout)."""
    c = x.shape[-1]
    w = kernel.reshape(kh, kh, c, kernel.shape[-1])  # HWIO
    return jax.lax.conv_general_dilated(
        x,
        w.astype(x.dtype),
        (stride, stride),
        [(padding, padding), (padding, padding)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


class Conv(nn.Module):
    """Bias-free square conv (the neck's and DeepSeek's downsampling convs)."""

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.kernel_size
        kernel = logical_param(
            self,
            "kernel",
            nn.initializers.lecun_normal(),
            (k * k * x.shape[-1], self.features),
            (ax.CHANNELS, ax.EMBED),
            self.param_dtype,
        )
        return conv2d(jnp.asarray(x, self.dtype), kernel, k, self.stride, self.padding)


class Neck(nn.Module):
    """conv 1x1 -> LayerNorm2d -> conv 3x3 (pad 1) -> LayerNorm2d, no biases; NHWC."""

    channels: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = Conv(self.channels, 1, name="conv1", **kw)(x)
        x = LayerNorm(1e-6, name="layer_norm1", **kw)(x)
        x = Conv(self.channels, 3, padding=1, name="conv2", **kw)(x)
        return LayerNorm(1e-6, name="layer_norm2", **kw)(x)


def relative_table(size: int) -> np.ndarray:
    """[size, size] indices into a [2*size - 1, Dh] table: q - k + size - 1 (equal q/k sizes)."""
    q = np.arange(size)[:, None]
    k = np.arange(size)[None, :]
    return q - k + size - 1


class RelPosAttention(nn.Module):
    """Attention over a [B, h, w, D] grid with a fused qkv and decomposed relative positions."""

    cfg: SamVisionConfig
    size: int  # grid side this attention sees (window side, or the whole grid)
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.cfg
        b, h, w, d = x.shape
        nh, dh = cfg.num_heads, cfg.head_dim
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        qkv = Dense(
            (3, nh, dh), (ax.EMBED,), (None, ax.HEADS, ax.HEAD_DIM), cfg.qkv_bias, name="qkv", **kw
        )(x)  # [B, h, w, 3, H, Dh]
        qkv = qkv.reshape(b, h * w, 3, nh, dh)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, T, H, Dh]
        scores = jnp.einsum("bqhd,bkhd->bhqk", q * dh**-0.5, k).astype(jnp.float32)
        if cfg.use_rel_pos:
            init = nn.initializers.zeros
            shape = (2 * self.size - 1, dh)
            axes = (ax.POSITIONS, ax.HEAD_DIM)
            rel_h = logical_param(self, "rel_pos_h", init, shape, axes, self.param_dtype)
            rel_w = logical_param(self, "rel_pos_w", init, shape, axes, self.param_dtype)
            rh = jnp.asarray(rel_h, self.dtype)[relative_table(h)]  # [h, kh, Dh]
            rw = jnp.asarray(rel_w, self.dtype)[relative_table(w)]  # [w, kw, Dh]
            q_grid = q.reshape(b, h, w, nh, dh)
            bias_h = jnp.einsum("byxnc,ykc->bnyxk", q_grid, rh)  # [B, H, h, w, kh]
            bias_w = jnp.einsum("byxnc,xkc->bnyxk", q_grid, rw)  # [B, H, h, w, kw]
            bias = bias_h[..., :, None] + bias_w[..., None, :]  # [B, H, h, w, kh, kw]
            scores = scores + bias.reshape(b, nh, h * w, h * w).astype(jnp.float32)
        probs = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, h, w, nh, dh)
        return Dense((d,), (ax.HEADS, ax.HEAD_DIM), (ax.EMBED,), True, name="proj", **kw)(out)


def window_partition(x: Array, window: int) -> tuple[Array, tuple[int, int]]:
    """[B, h, w, D] -> [B * nh * nw, window, window, D], zero-padding h, w up to multiples."""
    b, h, w, d = x.shape
    ph, pw = -h % window, -w % window
    x = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)))
    hp, wp = h + ph, w + pw
    x = x.reshape(b, hp // window, window, wp // window, window, d).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window, window, d), (hp, wp)


def window_unpartition(x: Array, window: int, padded: tuple[int, int], size: tuple[int, int]):
    """Inverse of window_partition: [B * nh * nw, window, window, D] -> [B, h, w, D]."""
    hp, wp = padded
    d = x.shape[-1]
    b = x.shape[0] // ((hp // window) * (wp // window))
    x = x.reshape(b, hp // window, wp // window, window, window, d).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, d)[:, : size[0], : size[1]]


class SamLayer(nn.Module):
    cfg: SamVisionConfig
    window: int  # 0 = global
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.cfg
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h, w = x.shape[1:3]
        y = LayerNorm(cfg.layer_norm_eps, name="layer_norm1", **kw)(x)
        size = self.window or cfg.grid
        if self.window:
            y, padded = window_partition(y, self.window)
        y = RelPosAttention(cfg, size, name="attn", **kw)(y)
        if self.window:
            y = window_unpartition(y, self.window, padded, (h, w))
        x = x + y
        y = LayerNorm(cfg.layer_norm_eps, name="layer_norm2", **kw)(x)
        dense = dict(use_bias=True, **kw)
        y = Dense((cfg.intermediate_size,), (ax.EMBED,), (ax.MLP,), name="lin1", **dense)(y)
        y = activation(cfg.hidden_act)(y)
        y = Dense((cfg.hidden_size,), (ax.MLP,), (ax.EMBED,), name="lin2", **dense)(y)
        return nn.with_logical_constraint(x + y, (ax.BATCH, None, None, ax.EMBED))


class SamVisionEncoder(nn.Module):
    cfg: SamVisionConfig

    @nn.compact
    def __call__(self, pixel_values: Array, feature_layers: Sequence[int] = ()) -> SamOutput:
        """pixel_values [B, H, W, C] -> SamOutput (feature_layers: HF hidden-state indices)."""
        cfg = self.cfg
        kw = dtypes(cfg)
        b, hh, ww, _ = pixel_values.shape
        if (hh, ww) != (cfg.image_size, cfg.image_size):
            raise ValueError(f"image {hh}x{ww} does not match the SAM tower's {cfg.image_size}")
        g = cfg.grid
        x = PatchEmbed(cfg.hidden_size, cfg.patch_size, True, name="patch_embed", **kw)(
            pixel_values
        ).reshape(b, g, g, cfg.hidden_size)  # [B, h*w, D] -> [B, h, w, D]
        if cfg.use_abs_pos:
            pos = logical_param(
                self,
                "pos_embed",
                nn.initializers.zeros,
                (g, g, cfg.hidden_size),
                (None, None, ax.EMBED),
                kw["param_dtype"],
            )
            x = x + jnp.asarray(pos, kw["dtype"])[None]
        targets = [k % (cfg.num_layers + 1) for k in feature_layers]
        states = {0: x}
        layer_cls = SamLayer
        if cfg.remat_policy != "none":
            layer_cls = nn.remat(SamLayer, policy=remat_policy(cfg.remat_policy))
        for i in range(cfg.num_layers):
            x = layer_cls(cfg, cfg.layer_window(i), name=f"layers_{i}", **kw)(x)
            if i + 1 in targets:
                states[i + 1] = x
        last = Neck(cfg.output_channels, name="neck", **kw)(x)
        return SamOutput(last_hidden_state=last, features=tuple(states[t] for t in targets))


registry.register(
    registry.Architecture(
        kind="sam_vision",
        role="tower",
        config_cls=SamVisionConfig,
        module_cls=SamVisionEncoder,
        scope="high_res_vision_tower",
        init_inputs=lambda c: (
            (jnp.zeros((1, c.image_size, c.image_size, c.num_channels), jnp.float32),),
            {},
        ),
        resize_mode="pad_square",
        description="SAM ViT-B image encoder (windowed + global attention, rel. positions, neck)",
    )
)
