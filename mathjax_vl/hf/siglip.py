"""HF SigLIP vision tower <-> mathjax_vl SiglipVisionModel params.

Handles both a standalone `SiglipVisionModel` directory and the vision half of a `SiglipModel`
(the text half is reported as ignored, not imported). Key prefixes are discovered from the file
("", "vision_model.", "vision_tower.", "vision_tower.vision_model.", ...), so checkpoints saved by
older and newer transformers versions import alike.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

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
from mathjax_vl.models.siglip import (
    SiglipConfig,
    SiglipDualEncoder,
    SiglipTextConfig,
    SiglipVisionConfig,
    SiglipVisionModel,
)

PATCH_SUFFIX = "embeddings.patch_embedding.weight"

# HF config mapping (our field, HF field, HF default), both directions (hf.config_fields)
VISION_FIELDS = [
    ("hidden_size", "hidden_size", 768),
    ("intermediate_size", "intermediate_size", 3072),
    ("num_layers", "num_hidden_layers", 12),
    ("num_heads", "num_attention_heads", 12),
    ("image_size", "image_size", 224),
    ("patch_size", "patch_size", 16),
    ("num_channels", "num_channels", 3),
    ("layer_norm_eps", "layer_norm_eps", 1e-6),
    ("hidden_act", "hidden_act", "gelu_pytorch_tanh"),
    ("use_head", "vision_use_head", True),
]
TEXT_FIELDS = [
    ("vocab_size", "vocab_size", 32000),
    ("hidden_size", "hidden_size", 768),
    ("intermediate_size", "intermediate_size", 3072),
    ("num_layers", "num_hidden_layers", 12),
    ("num_heads", "num_attention_heads", 12),
    ("max_position_embeddings", "max_position_embeddings", 64),
    ("layer_norm_eps", "layer_norm_eps", 1e-6),
    ("hidden_act", "hidden_act", "gelu_pytorch_tanh"),
    ("projection_size", "projection_size", None),
]


def vision_from_hf(hf: dict[str, Any], **overrides: Any) -> SiglipVisionConfig:
    """A HF SiglipVisionConfig dict (config.json or a SiglipConfig's vision_config) -> ours."""
    kw = config_fields.from_hf(VISION_FIELDS, hf)
    if kw["hidden_size"] % kw["num_heads"]:
        raise ValueError(
            f"hidden_size {kw['hidden_size']} not divisible by heads {kw['num_heads']}"
        )
    return SiglipVisionConfig(**{**kw, **overrides})


def vision_to_hf(cfg: SiglipVisionConfig) -> dict[str, Any]:
    return config_fields.to_hf(VISION_FIELDS, cfg, "siglip_vision_model")


def text_from_hf(hf: dict[str, Any], **overrides: Any) -> SiglipTextConfig:
    kw = config_fields.from_hf(TEXT_FIELDS, hf)
    kw["projection_size"] = kw["projection_size"] or kw["hidden_size"]
    return SiglipTextConfig(**{**kw, **overrides})


def dual_from_hf(hf: dict[str, Any], where: str = "<config>", **overrides: Any) -> SiglipConfig:
    return SiglipConfig(
        vision=vision_from_hf(hf.get("vision_config") or {}, **overrides),
        text=text_from_hf(hf.get("text_config") or {}, **overrides),
    )


def dual_to_hf(cfg: SiglipConfig) -> dict[str, Any]:
    return {
        "architectures": ["SiglipModel"],
        "model_type": "siglip",
        "vision_config": vision_to_hf(cfg.vision),
        "text_config": config_fields.to_hf(TEXT_FIELDS, cfg.text, "siglip_text_model"),
    }


_IN_PROJ = "head.attention.in_proj_"


def vision_leaves(cfg: SiglipVisionConfig, hf_prefix: str = "", path=()) -> list[Leaf]:
    """Every tensor of a SigLIP vision tower. The MAP head's fused torch MultiheadAttention
    in_proj is addressed as virtual q/k/v keys (see split_in_proj / merge_in_proj)."""
    d, m, c, p = cfg.hidden_size, cfg.intermediate_size, cfg.num_channels, cfg.patch_size
    pre = hf_prefix
    leaves = [
        Leaf(
            f"{pre}embeddings.patch_embedding.weight",
            (*path, "embeddings", "patch_embedding", "kernel"),
            "conv",
            (d, c, p, p),
        ),
        Leaf(
            f"{pre}embeddings.patch_embedding.bias",
            (*path, "embeddings", "patch_embedding", "bias"),
            "copy",
            (d,),
        ),
        Leaf(
            f"{pre}embeddings.position_embedding.weight",
            (*path, "position_embedding"),
            "copy",
            (cfg.num_patches, d),
        ),
    ]
    leaves += vit_encoder_leaves(f"{pre}encoder.", (*path, "encoder"), d, m, cfg.num_layers)
    leaves += layer_norm_leaves(f"{pre}post_layernorm", (*path, "post_layernorm"), d)
    if cfg.use_head:
        head = (*path, "head")
        leaves.append(Leaf(f"{pre}head.probe", (*head, "probe"), "copy", (1, 1, d)))
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            leaves += linear_leaves(
                f"{pre}head.attention.{proj}", (*head, "attention", proj), d, d, True
            )
        leaves += layer_norm_leaves(f"{pre}head.layernorm", (*head, "layernorm"), d)
        leaves += linear_leaves(f"{pre}head.mlp.fc1", (*head, "mlp", "fc1"), m, d, True)
        leaves += linear_leaves(f"{pre}head.mlp.fc2", (*head, "mlp", "fc2"), d, m, True)
    return leaves


def split_in_proj(src: Any, cfg: SiglipVisionConfig, hf_prefix: str) -> TensorSource:
    """A TensorSource where the MAP head's fused in_proj_{weight,bias} [3D, ...] read as virtual
    q/k/v_proj tensors (the fused keys are consumed, i.e. marked used, in the process)."""
    src = src if isinstance(src, TensorSource) else TensorSource(src)
    if not cfg.use_head:
        return src
    d = cfg.hidden_size
    for kind, shape in (("weight", (3 * d, d)), ("bias", (3 * d,))):
        fused = src.take(f"{hf_prefix}{_IN_PROJ}{kind}", shape)
        for name, part in zip(("q_proj", "k_proj", "v_proj"), np.split(fused, 3, axis=0)):
            src.virtual[f"{hf_prefix}head.attention.{name}.{kind}"] = part
    return src


def merge_in_proj(tensors: dict[str, np.ndarray], hf_prefix: str) -> dict[str, np.ndarray]:
    """Inverse of split_in_proj (export to the layout torch MultiheadAttention loads)."""
    out = dict(tensors)
    for kind in ("weight", "bias"):
        names = [f"{hf_prefix}head.attention.{n}.{kind}" for n in ("q_proj", "k_proj", "v_proj")]
        if all(n in out for n in names):
            out[f"{hf_prefix}{_IN_PROJ}{kind}"] = np.concatenate([out.pop(n) for n in names], 0)
    return out


def abstract_vision_params(cfg: SiglipVisionConfig) -> dict:
    pixels = jnp.zeros((1, cfg.image_size, cfg.image_size, cfg.num_channels), jnp.float32)
    return abstract_params(SiglipVisionModel(cfg), pixels)


VISION_ARCHITECTURES = ("SiglipVisionModel", "SiglipModel")


def vision_config_from_hf(hf_cfg: dict, path: str, **knobs: Any) -> SiglipVisionConfig:
    if hf_cfg.get("model_type") == "siglip":
        hf_cfg = hf_cfg.get("vision_config") or {}
    try:
        return vision_from_hf(hf_cfg, **knobs)
    except (ValueError, TypeError) as e:
        raise ConversionError(f"{path}/config.json: {e}") from e


def load_siglip_vision(path: str, **knobs: Any) -> tuple[SiglipVisionConfig, dict, list[str]]:
    """A SiglipVisionModel dir, or the vision half of a SiglipModel dir -> (config, params,
    ignored keys). The ignored keys are a SiglipModel's text tower and logit scale/bias, which
    this library does not model; every other tensor must be consumed."""
    hf_cfg = common.read_config(path)
    common.check_architecture(hf_cfg, VISION_ARCHITECTURES, path)
    cfg = vision_config_from_hf(hf_cfg, path, **knobs)
    reader = common.CheckpointReader(path)
    prefix = find_prefix(reader.keys(), PATCH_SUFFIX, path)
    src = split_in_proj(TensorSource(reader, path), cfg, prefix)
    params = import_leaves(src, vision_leaves(cfg, prefix), abstract_vision_params(cfg))
    ignored = [k for k in reader.unused() if k.startswith(("text_model.", "logit_"))]
    for k in ignored:
        reader.mark_used(k)
    reader.check_all_used()
    return cfg, params, ignored


def vision_state(params: Any, cfg: SiglipVisionConfig, hf_prefix: str = "") -> dict:
    """Our SigLIP vision params -> HF tensors (torch MultiheadAttention layout for the head)."""
    import flax.linen as nn

    tensors = export_leaves(nn.meta.unbox(params), vision_leaves(cfg, hf_prefix))
    return merge_in_proj(tensors, hf_prefix)


def save_siglip_vision(params: Any, cfg: SiglipVisionConfig, path: str) -> list[str]:
    """Writes a dir loadable by transformers' SiglipVisionModel.from_pretrained."""
    state = vision_state(params, cfg)
    hf_cfg = {**vision_to_hf(cfg), "architectures": ["SiglipVisionModel"]}
    hf_cfg["dtype"] = str(next(iter(state.values())).dtype)
    common.write_config(path, hf_cfg)
    return common.save_safetensors(path, state)


def text_leaves(cfg: SiglipTextConfig, hf_prefix: str = "", path=()) -> list[Leaf]:
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
    leaves += linear_leaves(f"{pre}head", (*path, "head"), cfg.projection_size, d, True)
    return leaves


def dual_leaves(cfg: SiglipConfig) -> list[Leaf]:
    """Every tensor of a HF SiglipModel checkpoint."""
    leaves = vision_leaves(cfg.vision, "vision_model.", ("vision_model",))
    leaves += text_leaves(cfg.text, "text_model.", ("text_model",))
    leaves.append(Leaf("logit_scale", ("logit_scale",), "copy", (1,)))
    leaves.append(Leaf("logit_bias", ("logit_bias",), "copy", (1,)))
    return leaves


def abstract_dual_params(cfg: SiglipConfig) -> dict:
    v = cfg.vision
    pixels = jnp.zeros((1, v.image_size, v.image_size, v.num_channels), jnp.float32)
    return abstract_params(SiglipDualEncoder(cfg), pixels, jnp.zeros((1, 4), jnp.int32))


def load_siglip(path: str, **knobs: Any) -> tuple[SiglipConfig, dict]:
    """A SiglipModel dir -> (SiglipConfig, dual-encoder params); every tensor is consumed."""
    hf_cfg = common.read_config(path)
    common.check_architecture(hf_cfg, ("SiglipModel",), path)
    try:
        cfg = dual_from_hf(hf_cfg, **knobs)
    except (ValueError, TypeError) as e:
        raise ConversionError(f"{path}/config.json: {e}") from e
    reader = common.CheckpointReader(path)
    src = split_in_proj(TensorSource(reader, path), cfg.vision, "vision_model.")
    params = import_leaves(src, dual_leaves(cfg), abstract_dual_params(cfg))
    reader.check_all_used()
    return cfg, params


def save_siglip(params: Any, cfg: SiglipConfig, path: str) -> list[str]:
    """Writes a dir loadable by transformers' SiglipModel.from_pretrained."""
    import flax.linen as nn

    tensors = export_leaves(nn.meta.unbox(params), dual_leaves(cfg))
    state = merge_in_proj(tensors, "vision_model.")
    hf_cfg = dual_to_hf(cfg)
    hf_cfg["dtype"] = str(next(iter(state.values())).dtype)
    common.write_config(path, hf_cfg)
    return common.save_safetensors(path, state)


def _save_vision(params: Any, cfg: SiglipVisionConfig, path: str, **kw: Any) -> list[str]:
    return save_siglip_vision(params, cfg, path)


def _save_dual(params: Any, cfg: SiglipConfig, path: str, **kw: Any) -> list[str]:
    return save_siglip(params, cfg, path)


hf_registry.register(
    hf_registry.HFArchitecture(
        kind="siglip_vision",
        architectures=("SiglipVisionModel",),
        model_types=("siglip_vision_model",),
        config_from_hf=vision_config_from_hf,
        config_to_hf=vision_to_hf,
        load=lambda path, **knobs: load_siglip_vision(path, **knobs)[:2],
        save=_save_vision,
        leaves=vision_leaves,
        anchor_suffix=PATCH_SUFFIX,
        adapt_source=split_in_proj,
        adapt_export=merge_in_proj,
        processor_class="SiglipImageProcessor",
    )
)
hf_registry.register(
    hf_registry.HFArchitecture(
        kind="siglip",
        architectures=("SiglipModel",),
        model_types=("siglip",),
        config_from_hf=dual_from_hf,
        config_to_hf=dual_to_hf,
        load=load_siglip,
        save=_save_dual,
    )
)
