"""Qwen3 (HF `Qwen3ForCausalLM`): the decoder family with a per-head q/k RMSNorm, no q/k/v
biases and an explicit head_dim. HF names and config mapping: mathjax_vl.hf.qwen3."""

from __future__ import annotations

import dataclasses

from mathjax_vl.models import registry
from mathjax_vl.models.decoder import Decoder, DecoderConfig


@dataclasses.dataclass(frozen=True)
class Qwen3Config(DecoderConfig):
    qk_norm: bool = True
    head_dim: int | None = 128
    tie_word_embeddings: bool = False


registry.register(
    registry.Architecture(
        kind="qwen3",
        role="decoder",
        config_cls=Qwen3Config,
        module_cls=Decoder,
        scope="language_model",
        description="Qwen3 decoder (q/k RMSNorm, no q/k/v biases, explicit head_dim)",
    )
)
