"""SigLIP vision transformer (HF `SiglipVisionModel`): the vision tower of Math-PUMA.

Conv patch embedding (with bias) + learned positions (no class token) -> pre-LN encoder ->
post-LayerNorm -> optional multi-head attention-pooling ("MAP") head. A VLM takes its features
from an intermediate hidden state (Math-PUMA: -2, before the post-LayerNorm), so the tower returns
the requested `feature_layers` alongside the final outputs.
Pixels are NHWC [B, H, W, C], already rescaled and normalised (mathjax_vl.data.tower_images).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from mathjax_vl.models import logical_axes as ax
from mathjax_vl.models import registry
from mathjax_vl.models.layers import logical_param
from mathjax_vl.models.vit import (
    MLP,
    LayerNorm,
    MultiHeadAttention,
    PatchEmbed,
    dtypes,
    encoder_from_config,
)

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SiglipVisionConfig:
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu_pytorch_tanh"
    use_head: bool = True
    # Image preprocessing of the matching HF processor (SigLIP: mean = std = 0.5, bicubic).
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat_policy: str = "none"
    scan_unroll: int = 1  # layers per scan iteration; num_layers = a straight-line encoder

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def has_class_token(self) -> bool:
        return False


@flax.struct.dataclass
class VisionOutput:
    """last_hidden_state [B, T, D] (SigLIP: post-LN; CLIP: pre-post-LN as HF), pooled [B, D] or
    None, features: requested hidden states, hidden_states [L + 1, B, T, D] or None."""

    last_hidden_state: Array
    pooled: Array | None
    features: tuple[Array, ...]
    hidden_states: Array | None


class MAPHead(nn.Module):
    """Attention pooling: a learned probe attends over the tokens, then residual MLP."""

    cfg: SiglipVisionConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.cfg
        kw = dtypes(cfg)
        probe = logical_param(
            self,
            "probe",
            nn.initializers.normal(0.02),
            (1, 1, cfg.hidden_size),
            (None, None, ax.EMBED),
            kw["param_dtype"],
        )
        probe = jnp.broadcast_to(jnp.asarray(probe, kw["dtype"]), (x.shape[0], 1, cfg.hidden_size))
        h = MultiHeadAttention(cfg.num_heads, cfg.head_dim, name="attention", **kw)(probe, x)
        y = LayerNorm(cfg.layer_norm_eps, name="layernorm", **kw)(h)
        h = h + MLP(cfg.intermediate_size, cfg.hidden_act, name="mlp", **kw)(y)
        return h[:, 0]


class SiglipVisionModel(nn.Module):
    cfg: SiglipVisionConfig

    @nn.compact
    def __call__(
        self,
        pixel_values: Array,
        feature_layers: Sequence[int] = (),
        collect_all: bool = False,
        use_head: bool = True,
    ) -> VisionOutput:
        """pixel_values [B, H, W, C] -> VisionOutput. use_head=False skips the MAP head (a VLM
        never needs it; its params are still created at init so checkpoints keep them)."""
        cfg = self.cfg
        kw = dtypes(cfg)
        _, h, w, _ = pixel_values.shape
        if (h, w) != (cfg.image_size, cfg.image_size):
            raise ValueError(f"image {h}x{w} does not match the model's {cfg.image_size}")
        x = PatchEmbed(cfg.hidden_size, cfg.patch_size, True, name="embeddings", **kw)(pixel_values)
        pos = logical_param(
            self,
            "position_embedding",
            nn.initializers.normal(0.02),
            (cfg.num_patches, cfg.hidden_size),
            (ax.POSITIONS, ax.EMBED),
            kw["param_dtype"],
        )
        x = x + jnp.asarray(pos, kw["dtype"])[None]
        x = nn.with_logical_constraint(x, (ax.BATCH, ax.PATCH, ax.EMBED))
        encoder = encoder_from_config(cfg, ax.PATCH, name="encoder", **kw)
        enc = encoder(x, None, feature_layers, collect_all)
        last = LayerNorm(cfg.layer_norm_eps, name="post_layernorm", **kw)(enc.last_hidden_state)
        pooled = None
        if cfg.use_head and (use_head or self.is_initializing()):
            pooled = MAPHead(cfg, name="head")(last)
        return VisionOutput(
            last_hidden_state=last,
            pooled=pooled,
            features=enc.features,
            hidden_states=enc.hidden_states,
        )


@dataclasses.dataclass(frozen=True)
class SiglipTextConfig:
    vocab_size: int = 32000
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    max_position_embeddings: int = 64
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu_pytorch_tanh"
    projection_size: int = 768
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat_policy: str = "none"
    scan_unroll: int = 1  # layers per scan iteration; num_layers = a straight-line encoder

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclasses.dataclass(frozen=True)
class SiglipConfig:
    vision: SiglipVisionConfig = SiglipVisionConfig()
    text: SiglipTextConfig = SiglipTextConfig()


class SiglipTextModel(nn.Module):
    """Bidirectional text encoder; pooled = head(final_layer_norm(h)[:, -1]) (the last position,
    as HF: SigLIP pads to max_length, so the last slot is fixed)."""

    cfg: SiglipTextConfig

    @nn.compact
    def __call__(self, input_ids: Array, attention_mask: Array | None = None):
        from mathjax_vl.models.layers import Dense

        cfg = self.cfg
        kw = dtypes(cfg)
        t = input_ids.shape[1]
        if t > cfg.max_position_embeddings:
            raise ValueError(f"text length {t} > max_position_embeddings")
        tok = logical_param(
            self,
            "token_embedding",
            nn.initializers.normal(0.02),
            (cfg.vocab_size, cfg.hidden_size),
            (ax.VOCAB, ax.EMBED),
            kw["param_dtype"],
        )
        pos = logical_param(
            self,
            "position_embedding",
            nn.initializers.normal(0.02),
            (cfg.max_position_embeddings, cfg.hidden_size),
            (ax.POSITIONS, ax.EMBED),
            kw["param_dtype"],
        )
        x = jnp.take(jnp.asarray(tok, kw["dtype"]), input_ids, axis=0)
        x = x + jnp.asarray(pos, kw["dtype"])[None, :t]
        x = nn.with_logical_constraint(x, (ax.BATCH, ax.LENGTH, ax.EMBED))
        mask = None
        if attention_mask is not None:
            mask = attention_mask.astype(bool)[:, None, None, :]  # [B, 1, 1, T] keys
        enc = encoder_from_config(cfg, ax.LENGTH, name="encoder", **kw)(x, mask)
        last = LayerNorm(cfg.layer_norm_eps, name="final_layer_norm", **kw)(enc.last_hidden_state)
        pooled = Dense(
            (cfg.projection_size,), (ax.EMBED,), (ax.PROJ,), use_bias=True, name="head", **kw
        )(last[:, -1])
        return last, pooled


class SiglipDualEncoder(nn.Module):
    """HF SiglipModel: image/text embeddings (L2-normalised), logit_scale and logit_bias;
    logits_per_image = exp(scale) * img @ txt.T + bias (the sigmoid loss's logits)."""

    cfg: SiglipConfig

    def setup(self):
        self.vision_model = SiglipVisionModel(self.cfg.vision)
        self.text_model = SiglipTextModel(self.cfg.text)
        scalar = lambda v: nn.with_logical_partitioning(nn.initializers.constant(v), (None,))
        self.logit_scale = self.param("logit_scale", scalar(jnp.log(10.0)), (1,), jnp.float32)
        self.logit_bias = self.param("logit_bias", scalar(-10.0), (1,), jnp.float32)

    def __call__(self, pixel_values: Array, input_ids: Array, attention_mask: Array | None = None):
        img = self.vision_model(pixel_values).pooled.astype(jnp.float32)
        txt = self.text_model(input_ids, attention_mask)[1].astype(jnp.float32)
        img = img / jnp.linalg.norm(img, axis=-1, keepdims=True)
        txt = txt / jnp.linalg.norm(txt, axis=-1, keepdims=True)
        scale = jnp.asarray(self.logit_scale, jnp.float32)[0]
        bias = jnp.asarray(self.logit_bias, jnp.float32)[0]
        return {
            "image_embeds": img,
            "text_embeds": txt,
            "logit_scale": scale,
            "logit_bias": bias,
            "logits_per_image": jnp.exp(scale) * img @ txt.T + bias,
        }


def _pixels(v: SiglipVisionConfig) -> Array:
    return jnp.zeros((1, v.image_size, v.image_size, v.num_channels), jnp.float32)


registry.register(
    registry.Architecture(
        kind="siglip_vision",
        role="tower",
        config_cls=SiglipVisionConfig,
        module_cls=SiglipVisionModel,
        scope="vision_tower",
        init_inputs=lambda c: ((_pixels(c),), {}),
        resize_mode="squash",
        description="SigLIP vision tower (no class token; squash resize)",
    )
)
registry.register(
    registry.Architecture(
        kind="siglip",
        role="dual_encoder",
        config_cls=SiglipConfig,
        module_cls=SiglipDualEncoder,
        init_inputs=lambda c: ((_pixels(c.vision), jnp.zeros((1, 4), jnp.int32)), {}),
        description="SigLIP dual encoder (HF SiglipModel)",
    )
)
