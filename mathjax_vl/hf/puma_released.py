"""Import of Math-PUMA's released Qwen2vlm checkpoints (Math-PUMA_Qwen2VL-1.5B / -7B).

They were saved by Math-PUMA's own `Qwen2vlmForConditionalGeneration` (model_type "qwen2vlm"):
`vision_model` = AutoModel(SiglipVisionConfig) -> keys `vision_model.vision_model.*` (transformers
4.x SiglipVisionModel, MAP head included), `aligner` = bias-free SwiGLU
down(act(gate(x)) * up(x)) with gate/up [text, vision] and down [text, text], `language_model` =
AutoModelForCausalLM(Qwen2) -> `language_model.model.*` / `language_model.lm_head.weight` (absent
when tied). config.json: `vision_config`, `text_config` (full sub-config dicts),
`image_token_index`, `projector_hidden_act`, `vision_feature_layer`,
`vision_feature_select_strategy`, `ignore_index`. The tied head follows `text_config` (the
released model ties through its language model; the top-level PretrainedConfig default is
ignored). The released model expands ONE image token into the features; ours takes
image_seq_length placeholders (our data pipeline writes them), same logits.
"""

from __future__ import annotations

import os
from typing import Any

from mathjax_vl.hf import common, decoder
from mathjax_vl.hf import llava as hf_llava
from mathjax_vl.hf.common import ConversionError
from mathjax_vl.models.vlm import VLMConfig

ARCHITECTURES = ("Qwen2vlmForConditionalGeneration",)
MODEL_TYPE = "qwen2vlm"
IMAGE_TOKEN_ID = 151646  # REFERENCE.md section 2


def config_from_released(hf: dict[str, Any], where: str, **knobs: Any) -> VLMConfig:
    """A released Qwen2vlmConfig dict -> VLMConfig (SwiGLU projector, inner = text width)."""
    layer = hf.get("vision_feature_layer", -2)
    if not isinstance(layer, int):
        raise ConversionError(
            f"{where}: vision_feature_layer {layer!r} unsupported; Qwen2vlmAligner takes one "
            "layer (an int)"
        )
    text = dict(hf.get("text_config") or {})
    vision = {"model_type": "siglip_vision_model", **(hf.get("vision_config") or {})}
    text.setdefault("model_type", "qwen2")
    if "hidden_size" not in text:
        raise ConversionError(f"{where}: text_config.hidden_size missing")
    llava_like = {
        "vision_config": vision,
        "text_config": text,
        "image_token_index": hf.get("image_token_index", IMAGE_TOKEN_ID),
        "projector_hidden_act": hf.get("projector_hidden_act", "gelu"),
        "vision_feature_layer": layer,
        "vision_feature_select_strategy": hf.get("vision_feature_select_strategy", "default"),
        "projector_type": "swiglu",
        "projector_intermediate_size": text["hidden_size"],
        "multimodal_projector_bias": False,
    }
    return hf_llava.config_from_hf(llava_like, where, **knobs)


def load(path: str, **knobs: Any) -> tuple[VLMConfig, dict]:
    """A released Math-PUMA Qwen2vlm dir -> (VLMConfig, numpy params)."""
    hf_cfg = common.read_config(path)
    if hf_cfg.get("model_type") != MODEL_TYPE:
        common.check_architecture(hf_cfg, ARCHITECTURES, path)
    cfg = config_from_released(hf_cfg, os.path.join(path, common.CONFIG), **knobs)
    reader = common.CheckpointReader(path)
    params = hf_llava.import_vlm(reader, cfg, path, "aligner.", ("language_model.lm_head.weight",))
    decoder.check_all_used(reader, "released Math-PUMA Qwen2vlm")
    return cfg, params
