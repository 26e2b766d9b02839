"""CLIP vision and text transformers and the dual encoder (HF `CLIPModel`).

MAVIS trains a math-specific CLIP ("CLIP-Math") contrastively on diagram-caption pairs and then
uses its vision half as the VLM's tower, so both halves live here:
- vision: conv patches (no bias) + class token + learned positions -> pre_layrnorm -> encoder;
  pooled = post_layernorm(CLS) (HF keeps `last_hidden_state` un-normalised);
- text: token + position embeddings -> causal encoder -> final_layer_norm; pooled at the EOS token;
- dual encoder: linear projections (no bias), L2-normalised embeddings, learned logit scale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mathjax_vl.models import logical_axes as ax
from mathjax_vl.models import registry
from mathjax_vl.models.layers import Dense, logical_param
from mathjax_vl.models.siglip import VisionOutput
from mathjax_vl.models.vit import LayerNorm, PatchEmbed, dtypes, encoder_from_config

Array = jax.Array

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig:
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    image_size: int = 224
    patch_size: int = 32
    num_channels: int = 3
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD
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
        return True


@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    num_layers: int = 12
    num_heads: int = 8
    max_position_embeddings: int = 77
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    eos_token_id: int = 49407
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat_policy: str = "none"
    scan_unroll: int = 1  # layers per scan iteration; num_layers = a straight-line encoder

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
    vision: CLIPVisionConfig = CLIPVisionConfig()
    text: CLIPTextConfig = CLIPTextConfig()
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592


class CLIPVisionModel(nn.Module):
    cfg: CLIPVisionConfig

    @nn.compact
    def __call__(
        self,
        pixel_values: Array,
        feature_layers: Sequence[int] = (),
        collect_all: bool = False,
        use_head: bool = True,
    ) -> VisionOutput:
        """pixel_values [B, H, W, C] -> VisionOutput; hidden state 0 is after pre_layrnorm.
        use_head: the tower interface's flag (SigLIP's MAP head); CLIP has no head."""
        del use_head
        cfg = self.cfg
        kw = dtypes(cfg)
        b, h, w, _ = pixel_values.shape
        if (h, w) != (cfg.image_size, cfg.image_size):
            raise ValueError(f"image {h}x{w} does not match the model's {cfg.image_size}")
        patches = PatchEmbed(cfg.hidden_size, cfg.patch_size, False, name="embeddings", **kw)(
            pixel_values
        )
        cls_tok = logical_param(
            self,
            "class_embedding",
            nn.initializers.normal(cfg.hidden_size**-0.5),
            (cfg.hidden_size,),
            (ax.EMBED,),
            kw["param_dtype"],
        )
        cls_tok = jnp.broadcast_to(jnp.asarray(cls_tok, kw["dtype"]), (b, 1, cfg.hidden_size))
        x = jnp.concatenate([cls_tok, patches], axis=1)  # [B, 1 + N, D]
        pos = logical_param(
            self,
            "position_embedding",
            nn.initializers.normal(0.02),
            (cfg.num_patches + 1, cfg.hidden_size),
            (ax.POSITIONS, ax.EMBED),
            kw["param_dtype"],
        )
        x = x + jnp.asarray(pos, kw["dtype"])[None]
        x = LayerNorm(cfg.layer_norm_eps, name="pre_layrnorm", **kw)(x)
        x = nn.with_logical_constraint(x, (ax.BATCH, ax.PATCH, ax.EMBED))
        encoder = encoder_from_config(cfg, ax.PATCH, name="encoder", **kw)
        enc = encoder(x, None, feature_layers, collect_all)
        last = enc.last_hidden_state
        pooled = LayerNorm(cfg.layer_norm_eps, name="post_layernorm", **kw)(last[:, 0])
        return VisionOutput(
            last_hidden_state=last,
            pooled=pooled,
            features=enc.features,
            hidden_states=enc.hidden_states,
        )


def eos_positions(input_ids: Array, eos_token_id: int) -> Array:
    """Index of the pooled token per row, as HF: the first `eos_token_id`, or (legacy configs with
    eos_token_id == 2) the largest token id, which is CLIP's end-of-text in its original vocab."""
    if eos_token_id == 2:
        return jnp.argmax(input_ids, axis=-1)
    return jnp.argmax((input_ids == eos_token_id).astype(jnp.int32), axis=-1)


class CLIPTextModel(nn.Module):
    cfg: CLIPTextConfig

    @nn.compact
    def __call__(self, input_ids: Array, attention_mask: Array | None = None):
        """input_ids [B, T] -> (last_hidden_state [B, T, D] after final LN, pooled [B, D])."""
        cfg = self.cfg
        kw = dtypes(cfg)
        b, t = input_ids.shape
        if t > cfg.max_position_embeddings:
            raise ValueError(
                f"text length {t} > max_position_embeddings {cfg.max_position_embeddings}"
            )
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
        idx = jnp.arange(t)
        mask = (idx[:, None] >= idx[None, :])[None, None]  # causal [1, 1, T, T]
        if attention_mask is not None:
            mask = mask & attention_mask.astype(bool)[:, None, None, :]
        enc = encoder_from_config(cfg, ax.LENGTH, name="encoder", **kw)(x, mask)
        last = LayerNorm(cfg.layer_norm_eps, name="final_layer_norm", **kw)(enc.last_hidden_state)
        pooled = last[jnp.arange(b), eos_positions(input_ids, cfg.eos_token_id)]
        return last, pooled


def _l2_normalize(x: Array) -> Array:
    x = jnp.asarray(x, jnp.float32)
    return x / jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))


class CLIPDualEncoder(nn.Module):
    """CLIP-Math's contrastive model: `__call__` returns image/text embeddings and the scale.

    Output dict: image_embeds [Bi, P], text_embeds [Bt, P] (both L2-normalised, float32),
    logit_scale (the raw learned log-scale, a scalar), logits_per_image [Bi, Bt] =
    exp(logit_scale) * image_embeds @ text_embeds.T (HF's definition).
    """

    cfg: CLIPConfig

    def setup(self):
        cfg = self.cfg
        self.vision_model = CLIPVisionModel(cfg.vision)
        self.text_model = CLIPTextModel(cfg.text)
        proj = lambda name: Dense(
            (cfg.projection_dim,),
            (ax.EMBED,),
            (ax.PROJ,),
            use_bias=False,
            name=name,
            **dtypes(cfg.vision),
        )
        self.visual_projection = proj("visual_projection")
        self.text_projection = proj("text_projection")
        init_scale = nn.initializers.constant(cfg.logit_scale_init_value)
        self.logit_scale = self.param(
            "logit_scale", nn.with_logical_partitioning(init_scale, ()), (), jnp.float32
        )

    def encode_image(self, pixel_values: Array) -> Array:
        """Unnormalised projected image features [B, P] (HF get_image_features)."""
        return self.visual_projection(self.vision_model(pixel_values).pooled)

    def encode_text(self, input_ids: Array, attention_mask: Array | None = None) -> Array:
        """Unnormalised projected text features [B, P] (HF get_text_features)."""
        return self.text_projection(self.text_model(input_ids, attention_mask)[1])

    def __call__(
        self, pixel_values: Array, input_ids: Array, attention_mask: Array | None = None
    ) -> dict[str, Array]:
        img = _l2_normalize(self.encode_image(pixel_values))
        txt = _l2_normalize(self.encode_text(input_ids, attention_mask))
        scale = jnp.asarray(self.logit_scale, jnp.float32)
        return {
            "image_embeds": img,
            "text_embeds": txt,
            "logit_scale": scale,
            "logits_per_image": jnp.exp(scale) * img @ txt.T,
        }


def _pixels(v: CLIPVisionConfig) -> Array:
    return jnp.zeros((1, v.image_size, v.image_size, v.num_channels), jnp.float32)


registry.register(
    registry.Architecture(
        kind="clip_vision",
        role="tower",
        config_cls=CLIPVisionConfig,
        module_cls=CLIPVisionModel,
        scope="vision_tower",
        init_inputs=lambda c: ((_pixels(c),), {}),
        resize_mode="shortest_edge_crop",
        description="CLIP vision tower (class token; shortest-edge resize + centre crop)",
    )
)
registry.register(
    registry.Architecture(
        kind="clip",
        role="dual_encoder",
        config_cls=CLIPConfig,
        module_cls=CLIPDualEncoder,
        init_inputs=lambda c: ((_pixels(c.vision), jnp.zeros((1, 4), jnp.int32)), {}),
        description="CLIP dual encoder (MAVIS CLIP-Math)",
    )
)
