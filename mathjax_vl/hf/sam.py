"""HF `SamVisionModel` (the SAM ViT image encoder, e.g. DeepSeek-VL's high-res tower) <-> ours.

Weight table, HF key under a prefix (`vision_encoder.` in SamVisionModel) -> our path:
  patch_embed.projection.{weight,bias}  patch_embed/patch_embedding/{kernel,bias} (conv layout)
  pos_embed [1, g, g, D]                pos_embed [g, g, D]
  layers.{i}.layer_norm{1,2}.*          layers_{i}/layer_norm{1,2}/{scale,bias}
  layers.{i}.attn.qkv.* [3D, D]         layers_{i}/attn/qkv/kernel [D, 3, H, Dh] (bias [3, H, Dh])
  layers.{i}.attn.proj.*                layers_{i}/attn/proj/kernel [H, Dh, D]
  layers.{i}.attn.rel_pos_{h,w}         layers_{i}/attn/rel_pos_{h,w} [2 * side - 1, Dh]
  layers.{i}.mlp.lin{1,2}.*             layers_{i}/lin{1,2}/{kernel,bias}
  neck.conv{1,2}.weight, neck.layer_norm{1,2}.*   neck/... (bias-free convs, LayerNorm2d)
"""

from __future__ import annotations

from typing import Any

from mathjax_vl.hf import common, config_fields
from mathjax_vl.hf import registry as hf_registry
from mathjax_vl.hf.common import ConversionError
from mathjax_vl.hf.leaves import (
    Leaf,
    TensorSource,
    export_leaves,
    find_prefix,
    import_leaves,
    layer_norm_leaves,
    linear_leaves,
)
from mathjax_vl.models import registry as model_registry
from mathjax_vl.models.sam import SamVisionConfig

PATCH_SUFFIX = "patch_embed.projection.weight"
# (our field, HF field, HF default)
FIELDS = [
    ("hidden_size", "hidden_size", 768),
    ("num_layers", "num_hidden_layers", 12),
    ("num_heads", "num_attention_heads", 12),
    ("image_size", "image_size", 1024),
    ("patch_size", "patch_size", 16),
    ("num_channels", "num_channels", 3),
    ("output_channels", "output_channels", 256),
    ("window_size", "window_size", 14),
    ("global_attn_indexes", "global_attn_indexes", [2, 5, 8, 11]),
    ("layer_norm_eps", "layer_norm_eps", 1e-6),
    ("hidden_act", "hidden_act", "gelu"),
    ("qkv_bias", "qkv_bias", True),
    ("use_abs_pos", "use_abs_pos", True),
    ("use_rel_pos", "use_rel_pos", True),
]


def config_from_hf(hf: dict[str, Any], where: str = "<config>", **knobs: Any) -> SamVisionConfig:
    """A SamVisionConfig dict -> ours (mlp_dim defaults to mlp_ratio * hidden_size, as HF)."""
    kw = config_fields.from_hf(FIELDS, hf)
    kw["global_attn_indexes"] = tuple(kw["global_attn_indexes"])
    for name in ("image_size", "patch_size"):
        if isinstance(kw[name], (list, tuple)):
            if len(set(kw[name])) != 1:
                raise ConversionError(f"{where}: non-square {name} {kw[name]} is not supported")
            kw[name] = kw[name][0]
    mlp = hf.get("mlp_dim") or int(kw["hidden_size"] * hf.get("mlp_ratio", 4.0))
    if not kw["global_attn_indexes"]:
        raise ConversionError(f"{where}: global_attn_indexes is empty (DeepSeek-VL needs one)")
    try:
        return SamVisionConfig(intermediate_size=mlp, **kw, **knobs)
    except (TypeError, ValueError) as e:
        raise ConversionError(f"{where}: {e}") from e


def config_to_hf(cfg: SamVisionConfig) -> dict[str, Any]:
    d = config_fields.to_hf(FIELDS, cfg, "sam_vision_model")
    d["global_attn_indexes"] = list(cfg.global_attn_indexes)
    d["mlp_dim"] = cfg.intermediate_size
    return d


def conv_leaf(hf_key: str, path: tuple[str, ...], out_c: int, in_c: int, k: int) -> Leaf:
    return Leaf(hf_key, (*path, "kernel"), "conv", (out_c, in_c, k, k))


def neck_leaves(hf_prefix: str, path: tuple[str, ...], d: int, c: int) -> list[Leaf]:
    """A neck (conv1 1x1, layer_norm1, conv2 3x3, layer_norm2) under `hf_prefix`."""
    return [
        conv_leaf(f"{hf_prefix}conv1.weight", (*path, "conv1"), c, d, 1),
        *layer_norm_leaves(f"{hf_prefix}layer_norm1", (*path, "layer_norm1"), c),
        conv_leaf(f"{hf_prefix}conv2.weight", (*path, "conv2"), c, c, 3),
        *layer_norm_leaves(f"{hf_prefix}layer_norm2", (*path, "layer_norm2"), c),
    ]


def vision_leaves(cfg: SamVisionConfig, hf_prefix: str = "", path=()) -> list[Leaf]:
    """Every tensor of a SAM encoder (see the module docstring)."""
    d, m, p, c, g = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.patch_size,
        cfg.num_channels,
        cfg.grid,
    )
    pre = hf_prefix
    leaves = [
        Leaf(f"{pre}{PATCH_SUFFIX}", (*path, "patch_embed", "patch_embedding", "kernel"), "conv",
             (d, c, p, p)),
        Leaf(f"{pre}patch_embed.projection.bias", (*path, "patch_embed", "patch_embedding", "bias"),
             "copy", (d,)),
    ]  # fmt: skip
    if cfg.use_abs_pos:
        leaves.append(Leaf(f"{pre}pos_embed", (*path, "pos_embed"), "copy", (1, g, g, d)))
    for i in range(cfg.num_layers):
        lp, ours = f"{pre}layers.{i}.", (*path, f"layers_{i}")
        leaves += layer_norm_leaves(f"{lp}layer_norm1", (*ours, "layer_norm1"), d)
        leaves += linear_leaves(f"{lp}attn.qkv", (*ours, "attn", "qkv"), 3 * d, d, cfg.qkv_bias)
        leaves += linear_leaves(f"{lp}attn.proj", (*ours, "attn", "proj"), d, d, True)
        if cfg.use_rel_pos:
            side = cfg.layer_window(i) or g
            for axis in ("h", "w"):
                leaves.append(
                    Leaf(f"{lp}attn.rel_pos_{axis}", (*ours, "attn", f"rel_pos_{axis}"), "copy",
                         (2 * side - 1, cfg.head_dim))
                )  # fmt: skip
        leaves += layer_norm_leaves(f"{lp}layer_norm2", (*ours, "layer_norm2"), d)
        leaves += linear_leaves(f"{lp}mlp.lin1", (*ours, "lin1"), m, d, True)
        leaves += linear_leaves(f"{lp}mlp.lin2", (*ours, "lin2"), d, m, True)
    leaves += neck_leaves(f"{pre}neck.", (*path, "neck"), d, cfg.output_channels)
    return leaves


ARCHITECTURES = ("SamVisionModel",)


def load(path: str, **knobs: Any) -> tuple[SamVisionConfig, dict]:
    """A SamVisionModel dir -> (config, params)."""
    hf_cfg = common.read_config(path)
    common.check_architecture(hf_cfg, ARCHITECTURES, path)
    cfg = config_from_hf(hf_cfg, f"{path}/config.json", **knobs)
    reader = common.CheckpointReader(path)
    prefix = find_prefix(reader.keys(), PATCH_SUFFIX, path)
    shapes = model_registry.abstract_params(cfg)
    params = import_leaves(TensorSource(reader, path), vision_leaves(cfg, prefix), shapes)
    reader.check_all_used()
    return cfg, params


def save(params: Any, cfg: SamVisionConfig, path: str, **kw: Any) -> list[str]:
    """Writes a dir loadable by transformers' SamVisionModel.from_pretrained."""
    import flax.linen as nn

    state = export_leaves(nn.meta.unbox(params), vision_leaves(cfg, "vision_encoder."))
    hf_cfg = {**config_to_hf(cfg), "architectures": list(ARCHITECTURES)}
    hf_cfg["dtype"] = str(next(iter(state.values())).dtype)
    common.write_config(path, hf_cfg)
    return common.save_safetensors(path, state)


hf_registry.register(
    hf_registry.HFArchitecture(
        kind="sam_vision",
        architectures=ARCHITECTURES,
        model_types=("sam_vision_model",),
        config_from_hf=config_from_hf,
        config_to_hf=config_to_hf,
        load=load,
        save=save,
        leaves=vision_leaves,
        anchor_suffix=PATCH_SUFFIX,
    )
)
