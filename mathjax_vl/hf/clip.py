"""HF CLIP (`CLIPModel`, `CLIPVisionModel`) <-> mathjax_vl CLIP params."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from mathjax_vl.hf import common, config_fields
from mathjax_vl.hf import registry as hf_registry
from mathjax_vl.hf.common import ConversionError
from mathjax_vl.hf.leaves import (
    Leaf,
    TensorSource,
    abstract_params,
    export_leaves,
    find_prefix,
    import_leaves,
    layer_norm_leaves,
    linear_leaves,
    vit_encoder_leaves,
)
from mathjax_vl.models.clip import (
    CLIPConfig,
    CLIPDualEncoder,
    CLIPTextConfig,
    CLIPVisionConfig,
    CLIPVisionModel,
)

PATCH_SUFFIX = "embeddings.patch_embedding.weight"

# HF config mapping (our field, HF field, HF default), both directions (hf.config_fields)
VISION_FIELDS = [
    ("hidden_size", "hidden_size", 768),
    ("intermediate_size", "intermediate_size", 3072),
    ("num_layers", "num_hidden_layers", 12),
    ("num_heads", "num_attention_heads", 12),
    ("image_size", "image_size", 224),
    ("patch_size", "patch_size", 32),
    ("num_channels", "num_channels", 3),
    ("layer_norm_eps", "layer_norm_eps", 1e-5),
    ("hidden_act", "hidden_act", "quick_gelu"),
]
TEXT_FIELDS = [
    ("vocab_size", "vocab_size", 49408),
    ("hidden_size", "hidden_size", 512),
    ("intermediate_size", "intermediate_size", 2048),
    ("num_layers", "num_hidden_layers", 12),
    ("num_heads", "num_attention_heads", 8),
    ("max_position_embeddings", "max_position_embeddings", 77),
    ("layer_norm_eps", "layer_norm_eps", 1e-5),
    ("hidden_act", "hidden_act", "quick_gelu"),
    ("eos_token_id", "eos_token_id", 49407),
]


def vision_from_hf(hf: dict[str, Any], **overrides: Any) -> CLIPVisionConfig:
    return CLIPVisionConfig(**{**config_fields.from_hf(VISION_FIELDS, hf), **overrides})


def vision_to_hf(cfg: CLIPVisionConfig) -> dict[str, Any]:
    return config_fields.to_hf(VISION_FIELDS, cfg, "clip_vision_model")


def dual_from_hf(hf: dict[str, Any], where: str = "<config>", **overrides: Any) -> CLIPConfig:
    return CLIPConfig(
        vision=vision_from_hf(hf.get("vision_config") or {}, **overrides),
        text=CLIPTextConfig(
            **{**config_fields.from_hf(TEXT_FIELDS, hf.get("text_config") or {}), **overrides}
        ),
        projection_dim=hf.get("projection_dim", 512),
        logit_scale_init_value=hf.get("logit_scale_init_value", 2.6592),
    )


def dual_to_hf(cfg: CLIPConfig) -> dict[str, Any]:
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": cfg.projection_dim,
        "logit_scale_init_value": cfg.logit_scale_init_value,
        "vision_config": vision_to_hf(cfg.vision),
        "text_config": config_fields.to_hf(TEXT_FIELDS, cfg.text, "clip_text_model"),
    }


def vision_leaves(cfg: CLIPVisionConfig, hf_prefix: str = "", path=()) -> list[Leaf]:
    d, m, c, p = cfg.hidden_size, cfg.intermediate_size, cfg.num_channels, cfg.patch_size
    pre = hf_prefix
    leaves = [
        Leaf(f"{pre}embeddings.class_embedding", (*path, "class_embedding"), "copy", (d,)),
        Leaf(
            f"{pre}embeddings.patch_embedding.weight",
            (*path, "embeddings", "patch_embedding", "kernel"),
            "conv",
            (d, c, p, p),
        ),
        Leaf(
            f"{pre}embeddings.position_embedding.weight",
            (*path, "position_embedding"),
            "copy",
            (cfg.num_patches + 1, d),
        ),
    ]
    leaves += layer_norm_leaves(f"{pre}pre_layrnorm", (*path, "pre_layrnorm"), d)
    leaves += vit_encoder_leaves(f"{pre}encoder.", (*path, "encoder"), d, m, cfg.num_layers)
    leaves += layer_norm_leaves(f"{pre}post_layernorm", (*path, "post_layernorm"), d)
    return leaves


def text_leaves(cfg: CLIPTextConfig, hf_prefix: str = "", path=()) -> list[Leaf]:
    d, m, pre = cfg.hidden_size, cfg.intermediate_size, hf_prefix
    leaves = [
        Leaf(
            f"{pre}embeddings.token_embedding.weight",
            (*path, "token_embedding"),
            "copy",
            (cfg.vocab_size, d),
        ),
        Leaf(
            f"{pre}embeddings.position_embedding.weight",
            (*path, "position_embedding"),
            "copy",
            (cfg.max_position_embeddings, d),
        ),
    ]
    leaves += vit_encoder_leaves(f"{pre}encoder.", (*path, "encoder"), d, m, cfg.num_layers)
    leaves += layer_norm_leaves(f"{pre}final_layer_norm", (*path, "final_layer_norm"), d)
    return leaves


def dual_leaves(cfg: CLIPConfig) -> list[Leaf]:
    """Every tensor of a HF CLIPModel checkpoint."""
    leaves = vision_leaves(cfg.vision, "vision_model.", ("vision_model",))
    leaves += text_leaves(cfg.text, "text_model.", ("text_model",))
    leaves += linear_leaves(
        "visual_projection",
        ("visual_projection",),
        cfg.projection_dim,
        cfg.vision.hidden_size,
        False,
    )
    leaves += linear_leaves(
        "text_projection", ("text_projection",), cfg.projection_dim, cfg.text.hidden_size, False
    )
    leaves.append(Leaf("logit_scale", ("logit_scale",), "copy", ()))
    return leaves


def abstract_vision_params(cfg: CLIPVisionConfig) -> dict:
    pixels = jnp.zeros((1, cfg.image_size, cfg.image_size, cfg.num_channels), jnp.float32)
    return abstract_params(CLIPVisionModel(cfg), pixels)


def abstract_dual_params(cfg: CLIPConfig) -> dict:
    v = cfg.vision
    pixels = jnp.zeros((1, v.image_size, v.image_size, v.num_channels), jnp.float32)
    return abstract_params(CLIPDualEncoder(cfg), pixels, jnp.zeros((1, 4), jnp.int32))


ARCHITECTURES = ("CLIPModel", "CLIPVisionModel")


def load_clip(path: str, **knobs: Any) -> tuple[CLIPConfig | CLIPVisionConfig, dict]:
    """A CLIPModel dir -> (CLIPConfig, dual-encoder params); a CLIPVisionModel dir ->
    (CLIPVisionConfig, vision params). Every tensor must be consumed."""
    hf_cfg = common.read_config(path)
    arch = common.check_architecture(hf_cfg, ARCHITECTURES, path)
    reader = common.CheckpointReader(path)
    try:
        if arch == "CLIPModel":
            cfg = dual_from_hf(hf_cfg, **knobs)
        else:
            cfg = vision_from_hf(hf_cfg, **knobs)
    except (ValueError, TypeError) as e:
        raise ConversionError(f"{path}/config.json: {e}") from e
    if arch == "CLIPModel":
        params = import_leaves(
            TensorSource(reader, path), dual_leaves(cfg), abstract_dual_params(cfg)
        )
    else:
        prefix = find_prefix(reader.keys(), PATCH_SUFFIX, path)
        params = import_leaves(
            TensorSource(reader, path), vision_leaves(cfg, prefix), abstract_vision_params(cfg)
        )
    reader.check_all_used()
    return cfg, params


def save_clip(params: Any, cfg: CLIPConfig, path: str) -> list[str]:
    """Writes a dir loadable by transformers' CLIPModel.from_pretrained."""
    import flax.linen as nn

    state = export_leaves(nn.meta.unbox(params), dual_leaves(cfg))
    hf_cfg = dual_to_hf(cfg)
    hf_cfg["dtype"] = str(next(iter(state.values())).dtype)
    common.write_config(path, hf_cfg)
    return common.save_safetensors(path, state)


def save_clip_vision(params: Any, cfg: CLIPVisionConfig, path: str) -> list[str]:
    """Writes a dir loadable by transformers' CLIPVisionModel.from_pretrained."""
    import flax.linen as nn

    state = export_leaves(nn.meta.unbox(params), vision_leaves(cfg))
    hf_cfg = {**vision_to_hf(cfg), "architectures": ["CLIPVisionModel"]}
    hf_cfg["dtype"] = str(next(iter(state.values())).dtype)
    common.write_config(path, hf_cfg)
    return common.save_safetensors(path, state)


def vision_config_from_hf(hf: dict, where: str = "<config>", **knobs: Any) -> CLIPVisionConfig:
    try:
        return vision_from_hf(hf, **knobs)
    except (ValueError, TypeError) as e:
        raise ConversionError(f"{where}: {e}") from e


def _save_dual(params: Any, cfg: CLIPConfig, path: str, **kw: Any) -> list[str]:
    return save_clip(params, cfg, path)


def _save_vision(params: Any, cfg: CLIPVisionConfig, path: str, **kw: Any) -> list[str]:
    return save_clip_vision(params, cfg, path)


hf_registry.register(
    hf_registry.HFArchitecture(
        kind="clip",
        architectures=("CLIPModel",),
        model_types=("clip",),
        config_from_hf=dual_from_hf,
        config_to_hf=dual_to_hf,
        load=load_clip,
        save=_save_dual,
    )
)
hf_registry.register(
    hf_registry.HFArchitecture(
        kind="clip_vision",
        architectures=("CLIPVisionModel",),
        model_types=("clip_vision_model",),
        config_from_hf=vision_config_from_hf,
        config_to_hf=vision_to_hf,
        load=load_clip,
        save=_save_vision,
        leaves=vision_leaves,
        anchor_suffix=PATCH_SUFFIX,
        processor_class="CLIPImageProcessor",
    )
)
