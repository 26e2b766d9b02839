"""Model configs and modules from a train config's `model` block: the one place models are built.

The trainer's tasks, evaluation, the run exporter and the CLI all call `model_config` /
`train_module`, so a model means the same thing everywhere. The `model` block:

  kind: a decoder kind (qwen2 | qwen3 | llama | mistral, any registered decoder) for a bare
        LLM, "vlm" (the registry's "llava" composite) or "dual_encoder" (CLIP-Math)
  decoder: the decoder config's fields; for a VLM `decoder.kind` picks the text model
           (default qwen2)
  vision: the tower's fields plus `kind` (siglip | clip, or the registry names siglip_vision /
          clip_vision); projector: ProjectorConfig fields (`kind` mlp | swiglu)
  image_token_id, vision_feature_layer, vision_feature_select_strategy (VLM)
  kind deepseek_vl_hybrid / deepseek_vl: decoder, vision (SigLIP fields), high_res_vision (SAM
  fields; hybrid only), image_token_id, low_res_resample (models.deepseek_vl.from_block)
  text, projection_dim, logit_scale_init_value (dual encoder)
Unknown kinds are errors listing the registered ones (mathjax_vl.models.registry).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mathjax_vl.models import registry

DEFAULT_KIND = "qwen2"
VLM_KIND = "vlm"
DUAL_ENCODER_KIND = "dual_encoder"
# the contrastive task's module holds the CLIP dual encoder under this scope
DUAL_ENCODER_SCOPE = "clip"
# loss.contrastive -> whether the dual encoder learns SigLIP's logit bias
CONTRASTIVE_LOSSES = {"clip": False, "siglip": True}


def _plain(d: Any) -> dict[str, Any]:
    return dict(d.to_dict()) if hasattr(d, "to_dict") else dict(d or {})


def model_kind(model: Mapping) -> str:
    """The block's kind, canonical: a registered decoder kind, "llava" or "dual_encoder"."""
    kind = model.get("kind", DEFAULT_KIND)
    if kind == DUAL_ENCODER_KIND:
        return kind
    spec = registry.get(kind)
    if spec.role not in ("decoder", "composite"):
        raise registry.UnknownKindError(
            f"model.kind {kind!r} is a {spec.role}, not a model to train; use a decoder kind "
            f"{list(registry.kinds('decoder'))}, 'vlm' or 'dual_encoder'"
        )
    return spec.kind


def decoder_config(d: Any, kind: str | None = None) -> Any:
    """A decoder config from its fields; `d["kind"]` (or `kind`, default qwen2) picks the class."""
    d = _plain(d)
    name = d.pop("kind", None) or kind or DEFAULT_KIND
    if kind is not None and registry.get(name).kind != registry.get(kind).kind:
        raise ValueError(f"model.decoder.kind {name!r} disagrees with model.kind {kind!r}")
    return registry.config_from_dict(name, d, role="decoder")


def vlm_config(model: Mapping) -> Any:
    """VLMConfig from a `model` block (any registered tower, projector and decoder)."""
    from mathjax_vl.models.vlm import VLMConfig, tower_kind

    vision = _plain(model["vision"])
    kind = tower_kind(vision.pop("kind", "siglip"))
    # the composite's config class (VLMConfig or a subclass, e.g. InternVLConfig); fields a
    # subclass adds (downsample_ratio) come from the block as they are
    cls = registry.get(model.get("kind", VLM_KIND)).config_cls
    base = {f.name for f in dataclasses.fields(VLMConfig)}
    extra = {f.name: model.get(f.name) for f in dataclasses.fields(cls) if f.name not in base}
    extra = {k: v for k, v in extra.items() if v is not None}
    layer = model.get("vision_feature_layer", _default(cls, "vision_feature_layer"))
    return cls(
        vision=registry.config_from_dict(kind, vision, role="tower"),
        text=decoder_config(model["decoder"]),
        projector=registry.config_from_dict("mlp", _plain(model["projector"]), role="projector"),
        image_token_id=int(model["image_token_id"]),
        vision_feature_layer=layer if isinstance(layer, int) else tuple(layer),
        vision_feature_select_strategy=model.get("vision_feature_select_strategy", "default"),
        **extra,
    )


def _default(cls: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def dual_encoder_config(model: Mapping) -> Any:
    from mathjax_vl.models.clip import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

    vision = _plain(model["vision"])
    vision.pop("kind", None)
    return CLIPConfig(
        vision=registry.flat_config(CLIPVisionConfig, vision, "clip_vision"),
        text=registry.flat_config(CLIPTextConfig, _plain(model["text"]), "clip text"),
        projection_dim=int(model.get("projection_dim", 512)),
        logit_scale_init_value=float(model.get("logit_scale_init_value", 2.6592)),
    )


def model_config(model: Mapping) -> Any:
    """The config dataclass a `model` block describes."""
    kind = model_kind(model)
    if kind == DUAL_ENCODER_KIND:
        return dual_encoder_config(model)
    if registry.get(kind).role == "composite":
        cls = registry.get(kind).config_cls
        if hasattr(cls, "from_block"):  # a composite with its own block layout (DeepSeek-VL)
            return cls.from_block(model)
        return vlm_config(model)
    return decoder_config(model.get("decoder", {}), kind)


class ContrastiveDualEncoder(nn.Module):
    """The CLIP dual encoder (scope "clip") plus SigLIP's learned logit bias (init -10, as the
    SigLIP paper) when trained with the sigmoid loss."""

    cfg: Any
    with_bias: bool

    @nn.compact
    def __call__(self, pixel_values, input_ids, attention_mask):
        out = registry.build(self.cfg, name=DUAL_ENCODER_SCOPE)(
            pixel_values, input_ids, attention_mask
        )
        if self.with_bias:
            out["logit_bias"] = self.param(
                "logit_bias", nn.with_logical_partitioning(nn.initializers.constant(-10.0), ()), ()
            )
        return out


def contrastive_loss(config: Mapping) -> str:
    kind = config.get("loss", {}).get("contrastive", "clip")
    if kind not in CONTRASTIVE_LOSSES:
        raise ValueError(
            f"loss.contrastive must be one of {sorted(CONTRASTIVE_LOSSES)}, got {kind!r}"
        )
    return kind


def train_module(config: Mapping) -> tuple[Any, nn.Module]:
    """(model config, the Flax module whose params a training run's state holds) for a full
    train config (the dual encoder's module depends on loss.contrastive)."""
    cfg = model_config(config["model"])
    if model_kind(config["model"]) == DUAL_ENCODER_KIND:
        return cfg, ContrastiveDualEncoder(cfg, CONTRASTIVE_LOSSES[contrastive_loss(config)])
    return cfg, registry.build(cfg)


def train_init_inputs(config: Mapping, cfg: Any) -> tuple[tuple, dict]:
    """Dummy inputs creating every parameter the training module has (with an image)."""
    ids = jnp.zeros((1, 4), jnp.int32)
    if model_kind(config["model"]) == DUAL_ENCODER_KIND:
        v = cfg.vision
        pixels = jnp.zeros((1, v.image_size, v.image_size, v.num_channels), jnp.float32)
        return (pixels, ids, jnp.ones_like(ids)), {}
    if hasattr(cfg, "image_inputs"):  # composites taking several per-image arrays
        images = {k: jnp.zeros((1, *s), jnp.float32) for k, s in cfg.image_inputs.items()}
        return (ids,), images
    if registry.spec_of(cfg).role == "composite":
        v = cfg.vision
        pixels = jnp.zeros((1, v.image_size, v.image_size, v.num_channels), jnp.float32)
        return (ids,), {"pixel_values": pixels}
    return (ids,), {}
