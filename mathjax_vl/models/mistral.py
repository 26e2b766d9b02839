"""Mistral (HF `MistralForCausalLM`; MAVIS's MAmmoTH2-7B is one): the decoder family without
biases and with sliding-window attention (`sliding_window`), in training, in the blocked causal
path and in the KV cache. HF names and config mapping: mathjax_vl.hf.mistral."""

from __future__ import annotations

import dataclasses

from mathjax_vl.models import registry
from mathjax_vl.models.decoder import Decoder, DecoderConfig


@dataclasses.dataclass(frozen=True)
class MistralConfig(DecoderConfig):
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 14336
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 32768
    sliding_window: int | None = 4096


registry.register(
    registry.Architecture(
        kind="mistral",
        role="decoder",
        config_cls=MistralConfig,
        module_cls=Decoder,
        scope="language_model",
        description="Mistral decoder (no biases, sliding-window attention)",
    )
)
