"""Llama 2 / 3.x (HF `LlamaForCausalLM`; DeepSeek-Math-7B is this architecture): the decoder
family without biases (unless `attention_bias` / `mlp_bias`), RoPE "default", "linear" or
"llama3" scaling. HF names and config mapping: mathjax_vl.hf.llama."""

from __future__ import annotations

import dataclasses

from mathjax_vl.models import registry
from mathjax_vl.models.decoder import Decoder, DecoderConfig


@dataclasses.dataclass(frozen=True)
class LlamaConfig(DecoderConfig):
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 4096


registry.register(
    registry.Architecture(
        kind="llama",
        role="decoder",
        config_cls=LlamaConfig,
        module_cls=Decoder,
        scope="language_model",
        description="Llama 2 / 3.x decoder (no biases; rope_type default, linear or llama3)",
    )
)
