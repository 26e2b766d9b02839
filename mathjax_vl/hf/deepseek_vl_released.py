"""Import of the released DeepSeek-VL layout (`MultiModalityCausalLM`, model_type
"multi_modality"): deepseek-ai/deepseek-vl-{1.3b,7b}-{base,chat} and the Math-PUMA DeepSeek
checkpoint (Math-PUMA_DeepSeek-Math-VL-7B), trained with DeepSeek-VL's own code.

Names come from DeepSeek-VL's modules (the same mapping transformers'
convert_deepseek_vl_hybrid_weights_to_hf.py applies):
  vision_model.vision_tower_high.vision_tower.*  SAM-B (timm-style): patch_embed.proj, pos_embed,
      blocks.{i}.{norm1,norm2,attn.qkv,attn.proj,attn.rel_pos_h/w,mlp.lin1/lin2},
      neck.{0,1,2,3} (conv, LN, conv, LN), neck_hd.{0..3}, downsamples.{0,1}, hd_alpha_downsamples
  vision_model.vision_tower_low.vision_tower.*   SigLIP (timm VisionTransformer): pos_embed
      [1, N, D], patch_embed.proj, blocks.{i}.{norm1,norm2,attn.qkv (fused q|k|v),attn.proj,
      mlp.fc1/fc2}, norm; attn_pool.* (a MAP head the model never runs) is ignored
  vision_model.vision_tower.*                    the same SigLIP, DeepSeek-VL without SAM
  vision_model.{high,low}_layer_norm.*           made by HybridVisionTower, never applied: ignored
  aligner.high_up_proj / low_up_proj / layers.1  the hybrid split MLP (layers.0 is the GELU);
  aligner.layers.0 / layers.2                    the plain "mlp_gelu" aligner
  language_model.model.*, language_model.lm_head.weight   LlamaForCausalLM
config.json: `vision_config` {cls, params: {high_res_cfg, low_res_cfg} | {model_name, ...}},
`aligner_config` {params: {projector_type, depth, input_dim, n_embed}}, `language_config` (a
LlamaConfig dict written by transformers 4.38, fields at their defaults omitted). Tower sizes
follow from `model_name` (the table below, as DeepSeek-VL's code has them); `towers=` replaces it.
The released tensors are renamed to the native layout (hf.deepseek_vl) and imported from there.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from mathjax_vl.hf import common, decoder, sam, siglip
from mathjax_vl.hf import deepseek_vl as native
from mathjax_vl.hf import llama as hf_llama
from mathjax_vl.hf.common import ConversionError
from mathjax_vl.hf.leaves import TensorSource
from mathjax_vl.models.deepseek_vl import DeepseekVLConfig
from mathjax_vl.models.sam import SamVisionConfig
from mathjax_vl.models.siglip import SiglipVisionConfig

ARCHITECTURES = ("MultiModalityCausalLM",)
MODEL_TYPE = "multi_modality"
IMAGE_TOKEN_ID = 100015  # <image_placeholder> in DeepSeek-VL's tokenizer
HIGH = "vision_model.vision_tower_high.vision_tower."
LOW_HYBRID = "vision_model.vision_tower_low.vision_tower."
LOW_PLAIN = "vision_model.vision_tower."
IGNORED = ("vision_model.high_layer_norm.", "vision_model.low_layer_norm.", "attn_pool.")
PROJECTORS = {"low_high_hybrid_split_mlp_gelu": "hybrid", "mlp_gelu": "plain"}

# model_name -> tower config (DeepSeek-VL's siglip_vit.py / sam.py tables)
TOWERS: dict[str, Any] = {
    "siglip_large_patch16_384": SiglipVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_layers=24, num_heads=16, image_size=384,
        patch_size=16, hidden_act="gelu", use_head=False,
    ),
    "sam_b_downsample": SamVisionConfig(),  # SAM-B: 768 wide, 12 layers, window 14, out 256
}  # fmt: skip
# transformers 4.38 LlamaConfig defaults (the released language_config omits fields at them)
LLAMA_DEFAULTS = {
    "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
    "num_hidden_layers": 32, "num_attention_heads": 32, "hidden_act": "silu",
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
    "rope_theta": 10000.0, "bos_token_id": 1, "eos_token_id": 2,
}  # fmt: skip

# (released pattern, native replacement) per part; "{N}" is the part's native prefix
SAM_RULES = [
    (r"patch_embed\.proj\.", "patch_embed.projection."),
    (r"blocks\.(\d+)\.norm(\d)\.", r"layers.\1.layer_norm\2."),
    (r"blocks\.(\d+)\.(attn|mlp)\.", r"layers.\1.\2."),
    (r"neck\.0\.", "neck.conv1."),
    (r"neck\.1\.", "neck.layer_norm1."),
    (r"neck\.2\.", "neck.conv2."),
    (r"neck\.3\.", "neck.layer_norm2."),
]
SAM_OUTSIDE = [  # released SAM keys that live outside the native SAM encoder
    (r"neck_hd\.0\.", "model.high_res_vision_neck.conv1."),
    (r"neck_hd\.1\.", "model.high_res_vision_neck.layer_norm1."),
    (r"neck_hd\.2\.", "model.high_res_vision_neck.conv2."),
    (r"neck_hd\.3\.", "model.high_res_vision_neck.layer_norm2."),
    (r"downsamples\.(\d)\.", lambda m: f"model.high_res_vision_proj.conv{int(m[1]) + 1}."),
    (r"hd_alpha_downsamples$", "model.high_res_vision_alpha"),
]
SIGLIP_RULES = [
    (r"patch_embed\.proj\.", "embeddings.patch_embedding."),
    (r"blocks\.(\d+)\.norm(\d)\.", r"encoder.layers.\1.layer_norm\2."),
    (r"blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.out_proj."),
    (r"blocks\.(\d+)\.mlp\.", r"encoder.layers.\1.mlp."),
    (r"norm\.", "post_layernorm."),
]
ALIGNER_RULES = {
    "hybrid": [("aligner.high_up_proj.", "model.aligner.high_res_vision_proj."),
               ("aligner.low_up_proj.", "model.aligner.vision_proj."),
               ("aligner.layers.1.", "model.aligner.proj.")],
    "plain": [("aligner.layers.0.", "model.aligner.linear1."),
              ("aligner.layers.2.", "model.aligner.linear2.")],
}  # fmt: skip


class RenamedSource(TensorSource):
    """A TensorSource that serves native key names from a reader holding released ones
    (`alias`: native -> released) plus derived `virtual` tensors (split qkv, squeezed pos)."""

    def __init__(self, reader: Any, source: str, alias: dict[str, str], virtual: dict):
        super().__init__(reader, source, virtual)
        self.alias = alias

    def has(self, key: str) -> bool:
        return key in self.virtual or key in self.alias

    def keys(self) -> list[str]:
        return sorted(set(self.alias) | set(self.virtual))

    def check(self, key: str, shape: tuple[int, ...], dtype: Any = None) -> None:
        if key in self.virtual:
            return super().check(key, shape, dtype)
        if key not in self.alias:
            raise ConversionError(
                f"{self.source}: no released tensor provides {key!r} (the native name); "
                f"{len(self.alias)} renamed tensors found"
            )
        self.base.check(self.alias[key], shape, dtype)

    def read(self, key: str, index: tuple[slice, ...] | None = None) -> np.ndarray:
        if key in self.virtual:
            return super().read(key, index)
        return self.base.read(self.alias[key], index)


def _apply(rules, name: str) -> str | None:
    for pattern, repl in rules:
        new, n = re.subn(rf"^{pattern}" if not pattern.startswith("^") else pattern, repl, name)
        if n:
            return new
    return None


def _tower(params: Mapping, towers: Mapping, where: str, kind: type) -> Any:
    name = params.get("model_name")
    base = towers.get(name)
    if not isinstance(base, kind):
        known = sorted(k for k, v in towers.items() if isinstance(v, kind))
        raise ConversionError(f"{where}.model_name {name!r} unknown; known: {known}")
    if params.get("select_layer", -1) != -1:
        raise ConversionError(
            f"{where}.select_layer {params['select_layer']!r} unsupported; supported: -1"
        )
    changes: dict[str, Any] = {"image_size": int(params.get("image_size", base.image_size))}
    if "pixel_mean" in params:
        changes.update(image_mean=tuple(params["pixel_mean"]), image_std=tuple(params["pixel_std"]))
    return dataclasses.replace(base, **changes)


def config_from_released(
    hf: dict[str, Any],
    where: str = "<config>",
    towers: Mapping[str, Any] | None = None,
    image_token_id: int = IMAGE_TOKEN_ID,
    **knobs: Any,
) -> DeepseekVLConfig:
    """A released MultiModalityConfig dict -> DeepseekVLConfig."""
    towers = {**TOWERS, **(towers or {})}
    vis = (hf.get("vision_config") or {}).get("params") or {}
    proj = (hf.get("aligner_config") or {}).get("params") or {}
    kind = PROJECTORS.get(proj.get("projector_type"))
    if kind is None:
        raise ConversionError(
            f"{where}: aligner_config.params.projector_type {proj.get('projector_type')!r} "
            f"unsupported; supported: {sorted(PROJECTORS)}"
        )
    if proj.get("depth", 2) != 2:
        raise ConversionError(f"{where}: aligner depth {proj['depth']} unsupported; supported: 2")
    lang = {**LLAMA_DEFAULTS, **(hf.get("language_config") or {})}
    lang.pop("torch_dtype", None)
    text = hf_llama.config_from_hf(lang, f"{where}: language_config", **knobs)
    tower_knobs = {k: v for k, v in knobs.items() if k in native.KNOBS_ALL}
    if kind == "hybrid":
        low_p, high_p = vis.get("low_res_cfg") or {}, vis.get("high_res_cfg") or {}
        low = _tower(
            low_p, towers, f"{where}: vision_config.params.low_res_cfg", SiglipVisionConfig
        )
        high = _tower(high_p, towers, f"{where}: vision_config.params.high_res_cfg",
                      SamVisionConfig)  # fmt: skip
        high = dataclasses.replace(high, **tower_knobs)
    else:
        low, high = _tower(vis, towers, f"{where}: vision_config.params", SiglipVisionConfig), None
    low = dataclasses.replace(low, **tower_knobs)
    dims = {"input_dim": low.hidden_size, "n_embed": text.hidden_size}
    for field, want in dims.items():
        if field in proj and proj[field] != want:
            raise ConversionError(
                f"{where}: aligner_config.params.{field} {proj[field]} != {want} (the towers and "
                "language_config imply it)"
            )
    small = {k: v for k, v in knobs.items() if k in ("dtype", "param_dtype")}
    # DeepSeek-VL resizes the padded 1024 px image to 384 px with bilinear (transformers'
    # converter writes resample=BILINEAR for the low-res view)
    return DeepseekVLConfig(
        vision=low, text=text, image_token_id=image_token_id, high_res=high,
        low_res_resample="bilinear" if high is not None else "bicubic", **small,
    )  # fmt: skip


def renamed_source(reader: common.CheckpointReader, cfg: DeepseekVLConfig, path: str):
    """The released tensors of `reader` under native names (see the module docstring)."""
    alias: dict[str, str] = {}
    virtual: dict[str, np.ndarray] = {}
    low_prefix = LOW_HYBRID if cfg.high_res is not None else LOW_PLAIN
    aligner = ALIGNER_RULES["hybrid" if cfg.high_res is not None else "plain"]
    d = cfg.vision.hidden_size
    for key in reader.keys():
        if key.startswith(IGNORED) or (key.startswith(low_prefix) and ".attn_pool." in key):
            reader.mark_used(key)
            continue
        new = None
        if key.startswith("language_model.model."):
            new = native.LM_PREFIX + key[len("language_model.model.") :]
        elif key == "language_model.lm_head.weight":
            new = native.LM_HEAD
        elif cfg.high_res is not None and key.startswith(HIGH):
            rest = key[len(HIGH) :]
            new = _apply(SAM_OUTSIDE, rest)
            if new is None:
                inner = _apply(SAM_RULES, rest)
                new = native.SAM_PREFIX + (rest if inner is None else inner)
        elif key.startswith(low_prefix):
            rest = key[len(low_prefix) :]
            qkv = re.fullmatch(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", rest)
            if qkv:
                shape = (3 * d, d) if qkv[2] == "weight" else (3 * d,)
                fused = reader.take(key, shape)
                for name, part in zip("qkv", np.split(fused, 3, axis=0)):
                    layer = f"{native.VISION_PREFIX}encoder.layers.{qkv[1]}.self_attn."
                    virtual[f"{layer}{name}_proj.{qkv[2]}"] = part
                continue
            if rest == "pos_embed":
                pos = reader.take(key, (1, cfg.vision.num_patches, d))
                virtual[f"{native.VISION_PREFIX}embeddings.position_embedding.weight"] = pos[0]
                continue
            new = native.VISION_PREFIX + (_apply(SIGLIP_RULES, rest) or rest)
        else:
            new = next((n + key[len(r) :] for r, n in aligner if key.startswith(r)), None)
        if new is None:
            continue  # left unused: check_all_used names it
        alias[new] = key
    return RenamedSource(reader, path, alias, virtual)


def load(path: str, towers: Mapping[str, Any] | None = None, **knobs: Any):
    """A released DeepSeek-VL dir -> (DeepseekVLConfig, numpy params)."""
    hf_cfg = common.read_config(path)
    if hf_cfg.get("model_type") != MODEL_TYPE:
        common.check_architecture(hf_cfg, ARCHITECTURES, path)
    where = os.path.join(path, common.CONFIG)
    cfg = config_from_released(hf_cfg, where, towers, **knobs)
    reader = common.CheckpointReader(path)
    src = renamed_source(reader, cfg, path)
    params = native.import_params(src, cfg, native.VISION_PREFIX)
    decoder.check_all_used(reader, f"released DeepSeek-VL ({cfg.kind})")
    return cfg, params


def is_released(path: str) -> bool:
    """Whether `path` holds the released layout (config.json model_type "multi_modality")."""
    try:
        return common.read_config(path).get("model_type") == MODEL_TYPE
    except ConversionError:
        return False


__all__ = ["TOWERS", "config_from_released", "is_released", "load", "sam", "siglip"]
