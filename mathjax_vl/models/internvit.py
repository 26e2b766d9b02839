"""InternViT (HF `InternVLVisionModel`): the vision tower of InternVL, MathCoder-VL and FigCodifier.

Conv patch embedding (with bias) -> a class token prepended -> learned positions [N + 1, D] ->
pre-norm encoder blocks with *layer scale* (x + lambda_1 * attn(norm1(x)); x + lambda_2 *
mlp(norm2(x))) -> an optional final LayerNorm (HF `use_mean_pooling=False`; the released
InternViT-300M has none). Norms are LayerNorm or RMSNorm (`norm_type`, InternViT-6B uses RMS),
attention may RMS-normalise q and k over the full width before the head split (`qk_norm`,
InternViT-6B), q/k/v carry a bias when `qkv_bias` (HF `attention_bias`).

A 448 px tile at patch 14 gives 32 x 32 = 1024 patch tokens; InternVL's pixel shuffle (0.5,
mathjax_vl.models.internvl) folds them into 256 tokens of width 4D. Tiling an image into several
448 px tiles is data-side (mathjax_vl.data.image_processing, resize_mode "dynamic_tiles"); the
tower sees each tile as one image. Pixels are NHWC [B, H, W, C], normalised with ImageNet mean/std.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mathjax_vl.models import logical_axes as ax
from mathjax_vl.models import registry
from mathjax_vl.models.layers import Dense, RMSNorm, logical_param
from mathjax_vl.models.siglip import VisionOutput
from mathjax_vl.models.vit import (
    MLP,
    LayerNorm,
    dtypes,
    remat_policy,
    resolve_feature_layers,
)

Array = jax.Array

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORM_TYPES = ("layer_norm", "rms_norm")
QK_NORM_EPS = 1e-6  # HF InternVLVisionRMSNorm's default; the config's eps is not passed to it


@dataclasses.dataclass(frozen=True)
class InternViTConfig:
    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_layers: int = 24
    num_heads: int = 16
    image_size: int = 448
    patch_size: int = 14
    num_channels: int = 3
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu"
    norm_type: str = "layer_norm"
    qkv_bias: bool = True  # InternViT-300M: True (HF field attention_bias, default False)
    qk_norm: bool = False
    layer_scale_init_value: float = 0.1
    use_mean_pooling: bool = True  # HF: True -> no final LayerNorm
    # Image preprocessing (HF GotOcr2ImageProcessor as InternVL configures it): ImageNet
    # mean/std, bicubic, aspect-ratio-matched tiles of image_size plus a thumbnail.
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD
    min_num_tiles: int = 1
    max_num_tiles: int = 12
    use_thumbnail: bool = True
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat_policy: str = "none"
    scan_unroll: int = 1

    def __post_init__(self):
        if self.norm_type not in NORM_TYPES:
            raise ValueError(f"internvl_vision norm_type {self.norm_type!r} not in {NORM_TYPES}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"internvl_vision hidden_size {self.hidden_size} not divisible by num_heads "
                f"{self.num_heads}"
            )
        if not 1 <= self.min_num_tiles <= self.max_num_tiles:
            raise ValueError(
                f"internvl_vision needs 1 <= min_num_tiles <= max_num_tiles, got "
                f"{self.min_num_tiles}, {self.max_num_tiles}"
            )

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
        return True


def _norm(cfg: InternViTConfig, name: str, kw: dict) -> nn.Module:
    if cfg.norm_type == "rms_norm":
        return RMSNorm(cfg.layer_norm_eps, name=name, **kw)
    return LayerNorm(cfg.layer_norm_eps, name=name, **kw)


class InternViTAttention(nn.Module):
    """Bidirectional MHA; q/k optionally RMS-normalised over the full width [D] (as HF)."""

    cfg: InternViTConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.cfg
        kw = dtypes(cfg)
        b, t, d = x.shape
        heads, head_axes = (cfg.num_heads, cfg.head_dim), (ax.HEADS, ax.HEAD_DIM)
        proj = lambda name: Dense(
            heads, (ax.EMBED,), head_axes, use_bias=cfg.qkv_bias, name=name, **kw
        )(x)  # [B, T, H, Dh]
        q, k, v = proj("q_proj"), proj("k_proj"), proj("v_proj")
        if cfg.qk_norm:  # normalise [B, T, D], then back to heads
            q = RMSNorm(QK_NORM_EPS, name="q_norm", **kw)(q.reshape(b, t, d)).reshape(q.shape)
            k = RMSNorm(QK_NORM_EPS, name="k_norm", **kw)(k.reshape(b, t, d)).reshape(k.shape)
        act_axes = (ax.BATCH, ax.PATCH, ax.HEADS, ax.HEAD_DIM)
        q, k, v = (nn.with_logical_constraint(a, act_axes) for a in (q, k, v))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) * cfg.head_dim**-0.5
        probs = jax.nn.softmax(scores, axis=-1).astype(kw["dtype"])
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, v)  # [B, T, H, Dh]
        out = nn.with_logical_constraint(out, act_axes)
        return Dense((d,), head_axes, (ax.EMBED,), use_bias=True, name="projection_layer", **kw)(
            out
        )


class InternViTLayer(nn.Module):
    """One block as an nn.scan body; carry = (h, selected hidden states), see vit.EncoderLayer."""

    cfg: InternViTConfig
    feature_targets: tuple[int, ...] = ()
    collect_all: bool = False

    @nn.compact
    def __call__(self, carry, idx: Array):
        cfg = self.cfg
        kw = dtypes(cfg)
        h, feats = carry
        scale = lambda name: jnp.asarray(
            logical_param(
                self,
                name,
                nn.initializers.constant(cfg.layer_scale_init_value),
                (cfg.hidden_size,),
                (ax.NORM,),
                kw["param_dtype"],
            ),
            kw["dtype"],
        )
        y = InternViTAttention(cfg, name="attention")(_norm(cfg, "layernorm_before", kw)(h))
        h = h + scale("lambda_1") * y
        y = MLP(cfg.intermediate_size, cfg.hidden_act, name="mlp", **kw)(
            _norm(cfg, "layernorm_after", kw)(h)
        )
        h = h + scale("lambda_2") * y
        h = nn.with_logical_constraint(h, (ax.BATCH, ax.PATCH, ax.EMBED))
        feats = tuple(jnp.where(idx + 1 == t, h, f) for t, f in zip(self.feature_targets, feats))
        return (h, feats), (h if self.collect_all else None)


class InternViT(nn.Module):
    cfg: InternViTConfig

    @nn.compact
    def __call__(
        self,
        pixel_values: Array,
        feature_layers: Sequence[int] = (),
        collect_all: bool = False,
        use_head: bool = True,
    ) -> VisionOutput:
        """pixel_values [B, S, S, C] (S = image_size) -> VisionOutput over [cls, patches]
        (T = 1 + (S/p)^2). use_head is accepted for the tower protocol (InternViT has none)."""
        from mathjax_vl.models.vit import PatchEmbed

        cfg = self.cfg
        kw = dtypes(cfg)
        b, h, w, _ = pixel_values.shape
        if (h, w) != (cfg.image_size, cfg.image_size):
            raise ValueError(
                f"internvl_vision: tile {h}x{w} does not match image_size {cfg.image_size} "
                "(tiles are cut to the tower's size by the data pipeline)"
            )
        x = PatchEmbed(cfg.hidden_size, cfg.patch_size, True, name="embeddings", **kw)(pixel_values)
        cls = logical_param(
            self, "cls_token", nn.initializers.zeros, (cfg.hidden_size,), (ax.EMBED,),
            kw["param_dtype"],
        )  # fmt: skip
        pos = logical_param(
            self,
            "position_embeddings",
            nn.initializers.normal(0.02),
            (cfg.num_patches + 1, cfg.hidden_size),
            (ax.POSITIONS, ax.EMBED),
            kw["param_dtype"],
        )
        cls = jnp.broadcast_to(jnp.asarray(cls, kw["dtype"]), (b, 1, cfg.hidden_size))
        x = jnp.concatenate([cls, x.astype(kw["dtype"])], axis=1)  # [B, 1 + N, D]
        x = x + jnp.asarray(pos, kw["dtype"])[None]
        x = nn.with_logical_constraint(x, (ax.BATCH, ax.PATCH, ax.EMBED))

        targets = resolve_feature_layers(feature_layers, cfg.num_layers)
        layer_cls = InternViTLayer
        if cfg.remat_policy != "none":
            layer_cls = nn.remat(
                layer_cls, policy=remat_policy(cfg.remat_policy), prevent_cse=False
            )
        layers = nn.scan(
            layer_cls,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=0,
            length=cfg.num_layers,
            unroll=min(max(cfg.scan_unroll, 1), cfg.num_layers),
            metadata_params={nn.PARTITION_NAME: ax.LAYERS},
        )(cfg, targets, collect_all, name="encoder")
        feats = tuple(x for _ in targets)
        (h_last, feats), ys = layers((x, feats), jnp.arange(cfg.num_layers))
        hidden_states = jnp.concatenate([x[None], ys], axis=0) if collect_all else None
        last = h_last
        if not cfg.use_mean_pooling:
            last = LayerNorm(cfg.layer_norm_eps, name="layernorm", **kw)(h_last)
        return VisionOutput(
            last_hidden_state=last, pooled=None, features=feats, hidden_states=hidden_states
        )


def _pixels(v: InternViTConfig):
    return ((jnp.zeros((1, v.image_size, v.image_size, v.num_channels), jnp.float32),), {})


registry.register(
    registry.Architecture(
        kind="internvl_vision",
        role="tower",
        config_cls=InternViTConfig,
        module_cls=InternViT,
        scope="vision_tower",
        aliases=("internvit",),
        init_inputs=_pixels,
        resize_mode="dynamic_tiles",
        description="InternViT (layer scale, optional q/k norm; class token; 448 px tiles)",
    )
)
