"""DeepSeek-VL <-> HF: transformers' `DeepseekVLHybridForConditionalGeneration` and
`DeepseekVLForConditionalGeneration` (import and export), and the released DeepSeek-VL layout
(import; mathjax_vl.hf.deepseek_vl_released).

Native weight table (transformers 5 save layout; our paths in models.deepseek_vl):
  model.vision_model.*                    vision_tower/* (hf.siglip; post_layernorm used)
  model.high_res_vision_model.vision_encoder.*   high_res_vision_tower/encoder/* (hf.sam)
  model.high_res_vision_neck.*            high_res_vision_tower/neck_hd/*
  model.high_res_vision_proj.conv{1,2}.weight    high_res_vision_tower/downsamples/conv{1,2}
  model.high_res_vision_alpha [1]         high_res_vision_tower/alpha
  model.aligner.vision_proj / high_res_vision_proj / proj   aligner_low / aligner_high / aligner_out
  model.aligner.linear1 / linear2 (DeepSeek-VL alone)       aligner_linear1 / aligner_out
  model.language_model.*, lm_head.weight  language_model/* (hf.decoder; no lm_head when tied)
HF -> ours -> HF is bit-identical (conversion only transposes and reshapes).
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax.linen as nn

from mathjax_vl.hf import common, decoder, sam, siglip
from mathjax_vl.hf import registry as hf_registry
from mathjax_vl.hf.common import ConversionError
from mathjax_vl.hf.leaves import (
    Leaf,
    TensorSource,
    export_leaves,
    find_prefix,
    import_leaves,
    linear_leaves,
)
from mathjax_vl.models import registry as model_registry
from mathjax_vl.models.deepseek_vl import HYBRID, PLAIN, DeepseekVLConfig

HYBRID_ARCH, PLAIN_ARCH = (
    "DeepseekVLHybridForConditionalGeneration",
    "DeepseekVLForConditionalGeneration",
)
LM_PREFIX, LM_HEAD = "model.language_model.", "lm_head.weight"
VISION_PREFIX = "model.vision_model."
SAM_PREFIX = "model.high_res_vision_model.vision_encoder."
KNOBS_ALL = ("dtype", "param_dtype", "remat_policy")


def config_from_hf(hf: dict[str, Any], where: str = "<config>", **knobs: Any) -> DeepseekVLConfig:
    """A DeepseekVL(Hybrid)Config dict -> ours; the top-level tie_word_embeddings decides the
    LM head (transformers ties lm_head to the text embeddings by it)."""
    txt = dict(hf.get("text_config") or {"model_type": "llama"})
    txt.setdefault("model_type", "llama")
    text_spec = hf_registry.by_model_type(txt["model_type"], "decoder", f"{where}: text_config")
    txt["tie_word_embeddings"] = bool(hf.get("tie_word_embeddings", True))
    tower_knobs = {k: v for k, v in knobs.items() if k in KNOBS_ALL}
    small = {k: v for k, v in knobs.items() if k in ("dtype", "param_dtype")}
    try:
        text = text_spec.config_from_hf(txt, f"{where}: text_config", **knobs)
        vision = siglip.vision_from_hf(hf.get("vision_config") or {}, **tower_knobs)
        high = None
        if "high_res_vision_config" in hf or hf.get("model_type") == HYBRID:
            high = sam.config_from_hf(
                hf.get("high_res_vision_config") or {}, f"{where}: high_res_vision_config",
                **tower_knobs,
            )  # fmt: skip
        return DeepseekVLConfig(
            vision=vision,
            text=text,
            image_token_id=int(hf.get("image_token_id", 100015)),
            high_res=high,
            **small,
        )
    except (ValueError, TypeError, KeyError) as e:
        if isinstance(e, ConversionError):
            raise
        raise ConversionError(f"{where}: {e}") from e


def config_to_hf(cfg: DeepseekVLConfig) -> dict[str, Any]:
    text = hf_registry.spec_of(cfg.text).config_to_hf(cfg.text)
    text.pop("architectures", None)
    text.pop("dtype", None)
    vision = siglip.vision_to_hf(cfg.vision)
    out = {
        "architectures": [HYBRID_ARCH if cfg.high_res is not None else PLAIN_ARCH],
        "model_type": cfg.kind,
        "image_token_id": cfg.image_token_id,
        "tie_word_embeddings": cfg.text.tie_word_embeddings,
        "text_config": text,
        "vision_config": vision,
    }
    if cfg.high_res is not None:
        out["high_res_vision_config"] = sam.config_to_hf(cfg.high_res)
    return out


def vision_leaves(cfg: DeepseekVLConfig, vision_prefix: str, sam_prefix: str) -> list[Leaf]:
    """Every non-decoder tensor in the native layout (prefixes as found in the file)."""
    t = cfg.text.hidden_size
    leaves = siglip.vision_leaves(cfg.vision, vision_prefix, ("vision_tower",))
    d_low = cfg.vision.hidden_size
    if cfg.high_res is None:
        leaves += linear_leaves("model.aligner.linear1", ("aligner_linear1",), t, d_low, True)
        leaves += linear_leaves("model.aligner.linear2", ("aligner_out",), t, t, True)
        return leaves
    h, tower = cfg.high_res, ("high_res_vision_tower",)
    c = h.output_channels
    leaves += sam.vision_leaves(h, sam_prefix, (*tower, "encoder"))
    leaves += sam.neck_leaves("model.high_res_vision_neck.", (*tower, "neck_hd"), h.hidden_size, c)
    down = (*tower, "downsamples")
    leaves.append(sam.conv_leaf("model.high_res_vision_proj.conv1.weight", (*down, "conv1"),
                                2 * c, c, 3))  # fmt: skip
    leaves.append(sam.conv_leaf("model.high_res_vision_proj.conv2.weight", (*down, "conv2"),
                                4 * c, 2 * c, 3))  # fmt: skip
    leaves.append(Leaf("model.high_res_vision_alpha", (*tower, "alpha"), "copy", (1,)))
    leaves += linear_leaves("model.aligner.vision_proj", ("aligner_low",), t // 2, d_low, True)
    leaves += linear_leaves("model.aligner.high_res_vision_proj", ("aligner_high",), t // 2,
                            4 * c, True)  # fmt: skip
    leaves += linear_leaves("model.aligner.proj", ("aligner_out",), t, t, True)
    return leaves


def import_params(src: TensorSource, cfg: DeepseekVLConfig, vision_prefix: str) -> dict:
    """Native-named tensors from `src` (a dir's, or renamed released ones) -> our params."""
    shapes = model_registry.abstract_params(cfg)
    params = decoder.import_decoder(src, cfg.text, shapes, LM_PREFIX, ("language_model",), LM_HEAD)
    params.update(import_leaves(src, vision_leaves(cfg, vision_prefix, SAM_PREFIX), shapes))
    return params


def load(path: str, **knobs: Any) -> tuple[DeepseekVLConfig, dict]:
    """A DeepseekVL(Hybrid)ForConditionalGeneration dir, or the released DeepSeek-VL layout
    (hf.deepseek_vl_released; knob `towers`), -> (config, numpy params)."""
    from mathjax_vl.hf import deepseek_vl_released as released

    if released.is_released(path):
        return released.load(path, **knobs)
    hf_cfg = common.read_config(path)
    common.check_architecture(hf_cfg, (HYBRID_ARCH, PLAIN_ARCH), path)
    cfg = config_from_hf(hf_cfg, os.path.join(path, common.CONFIG), **knobs)
    reader = common.CheckpointReader(path)
    vision_prefix = find_prefix(reader.keys(), siglip.PATCH_SUFFIX, path, contains="vision_model")
    if cfg.high_res is not None:
        found = find_prefix(reader.keys(), sam.PATCH_SUFFIX, path)
        if found != SAM_PREFIX:
            raise ConversionError(f"{path}: SAM tensors under {found!r}, expected {SAM_PREFIX!r}")
    params = import_params(TensorSource(reader, path), cfg, vision_prefix)
    decoder.check_all_used(reader, f"{cfg.kind} ({model_registry.kind_of(cfg.text)} text)")
    return cfg, params


def state_from_params(params: Any, cfg: DeepseekVLConfig) -> dict:
    """Our params -> the flat native state dict (transformers 5 key layout)."""
    p = nn.meta.unbox(params)
    p = p.get("params", p)
    state = decoder.export_decoder(p["language_model"], cfg.text, LM_PREFIX, LM_HEAD)
    state.update(export_leaves(p, vision_leaves(cfg, VISION_PREFIX, SAM_PREFIX)))
    return state


def preprocessor_config(cfg: DeepseekVLConfig) -> dict[str, Any]:
    """The HF image processor config matching the towers (data.tower_images.preprocess_deepseek)."""
    v = cfg.vision
    out = {
        "image_processor_type": "DeepseekVLHybridImageProcessor"
        if cfg.high_res is not None
        else "DeepseekVLImageProcessor",
        "do_resize": True,
        "size": {"height": v.image_size, "width": v.image_size},
        "min_size": 14,
        "resample": {"bicubic": 3, "bilinear": 2}[cfg.low_res_resample],
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "do_pad": True,
        "image_mean": list(v.image_mean),
        "image_std": list(v.image_std),
    }
    if cfg.high_res is not None:
        h = cfg.high_res
        out.update(
            high_res_size={"height": h.image_size, "width": h.image_size},
            high_res_resample=3,
            high_res_image_mean=list(h.image_mean),
            high_res_image_std=list(h.image_std),
        )
    return out


def save(
    params: Any,
    cfg: DeepseekVLConfig,
    path: str,
    tokenizer_dir: str | None = None,
    max_shard_bytes: int | None = None,
    dtype: str | None = None,
) -> list[str]:
    """Writes a dir DeepseekVL(Hybrid)ForConditionalGeneration.from_pretrained loads."""
    state = state_from_params(params, cfg)
    if dtype is not None:
        from mathjax_vl.models.precision import to_dtype

        state = {k: w.astype(to_dtype(dtype)) for k, w in state.items()}
    hf_cfg = config_to_hf(cfg)
    hf_cfg["dtype"] = str(next(iter(state.values())).dtype)
    common.write_config(path, hf_cfg)
    files = common.save_safetensors(path, state, max_shard_bytes)
    if tokenizer_dir is not None:
        files += hf_registry.copy_tokenizer_files(tokenizer_dir, path)
    if not os.path.exists(os.path.join(path, "preprocessor_config.json")):
        with open(os.path.join(path, "preprocessor_config.json"), "w") as f:
            json.dump(preprocessor_config(cfg), f, indent=2)
        files.append("preprocessor_config.json")
    return files


# The released layout's MultiModalityCausalLM is read by the hybrid's entry (its load tells the
# two apart; load_hf reports the kind of the config it returns).
for _kind, _archs in ((HYBRID, (HYBRID_ARCH, "MultiModalityCausalLM")), (PLAIN, (PLAIN_ARCH,))):
    hf_registry.register(
        hf_registry.HFArchitecture(
            kind=_kind,
            architectures=_archs,
            model_types=(_kind,),
            config_from_hf=config_from_hf,
            config_to_hf=config_to_hf,
            load=load,
            save=save,
            tokenizer_files=True,
        )
    )
