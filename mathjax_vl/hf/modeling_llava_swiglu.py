"""Remote code for Llava models with a bias-free SwiGLU projector (Math-PUMA's aligner).

`mathjax-vl export-hf` copies this file, unchanged, next to the weights of a VLM whose projector
is "swiglu" and points config.json's `auto_map` at it, so that

    AutoModelForImageTextToText.from_pretrained(DIR, trust_remote_code=True)

runs the model. transformers has no SwiGLU projector, and LlavaMultiModalProjector
(linear_2(act(linear_1(x))), with biases) cannot express down(act(gate(x)) * up(x)), so the
composition is transformers' Llava (any vision tower + any causal LM from their configs, the same
feature layer / select strategy / image-token scatter), with only the projector replaced. The file
imports torch and transformers only (it is never imported by mathjax_vl itself).

Weights use the module names: model.vision_tower.*, model.multi_modal_projector.{gate,up,down}_proj,
model.language_model.*, lm_head.weight.
"""

from __future__ import annotations

from torch import nn
from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaModel
from transformers.activations import ACT2FN

try:  # transformers >= 5: configs are strict dataclasses
    from huggingface_hub.dataclasses import strict
except ImportError:  # pragma: no cover - older transformers
    strict = None


class LlavaSwiGLUConfig(LlavaConfig):
    """LlavaConfig + the SwiGLU projector's inner width (None: the text hidden size)."""

    model_type = "llava_swiglu"
    projector_intermediate_size: int | None = None


if strict is not None:
    LlavaSwiGLUConfig = strict(LlavaSwiGLUConfig)


class LlavaSwiGLUProjector(nn.Module):
    """down_proj(act(gate_proj(x)) * up_proj(x)), no biases."""

    def __init__(self, config: LlavaSwiGLUConfig):
        super().__init__()
        layers = config.vision_feature_layer
        n = 1 if isinstance(layers, int) else len(layers)
        d_in = config.vision_config.hidden_size * n
        d_out = config.text_config.hidden_size
        inner = config.projector_intermediate_size or d_out
        self.gate_proj = nn.Linear(d_in, inner, bias=False)
        self.up_proj = nn.Linear(d_in, inner, bias=False)
        self.down_proj = nn.Linear(inner, d_out, bias=False)
        self.act = ACT2FN[config.projector_hidden_act]

    def forward(self, image_features):
        return self.down_proj(
            self.act(self.gate_proj(image_features)) * self.up_proj(image_features)
        )


class LlavaSwiGLUModel(LlavaModel):
    config_class = LlavaSwiGLUConfig

    def __init__(self, config: LlavaSwiGLUConfig):
        super().__init__(config)
        self.multi_modal_projector = LlavaSwiGLUProjector(config)
        self.post_init()


class LlavaSwiGLUForConditionalGeneration(LlavaForConditionalGeneration):
    config_class = LlavaSwiGLUConfig

    def __init__(self, config: LlavaSwiGLUConfig):
        super().__init__(config)
        self.model = LlavaSwiGLUModel(config)
        self.post_init()


__all__ = [
    "LlavaSwiGLUConfig",
    "LlavaSwiGLUForConditionalGeneration",
    "LlavaSwiGLUModel",
    "LlavaSwiGLUProjector",
]
