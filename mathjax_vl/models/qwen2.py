"""Qwen2 / Qwen2.5 (HF `Qwen2ForCausalLM`): the decoder family with q/k/v biases.

The module, cache and helpers are the family's (mathjax_vl.models.decoder); this file declares
the architecture: its config defaults and its registry entry. HF names and config mapping:
mathjax_vl.hf.qwen2.
"""

from __future__ import annotations

import dataclasses

from mathjax_vl.models import registry
from mathjax_vl.models.decoder import (  # noqa: F401  (the family's API, re-exported)
    REMAT_POLICIES,
    Decoder,
    DecoderConfig,
    DecoderLayer,
    DecoderOutput,
    KVCache,
    embedding_table,
    init_cache,
    lm_head_weight,
)


@dataclasses.dataclass(frozen=True)
class Qwen2Config(DecoderConfig):
    """Qwen2: q/k/v biases, no o/MLP biases, no q/k norm, default RoPE (theta 1e6)."""

    qkv_bias: bool = True


Qwen2 = Decoder  # the family's module under its historical name

registry.register(
    registry.Architecture(
        kind="qwen2",
        role="decoder",
        config_cls=Qwen2Config,
        module_cls=Decoder,
        scope="language_model",
        description="Qwen2 / Qwen2.5 decoder (q/k/v biases)",
    )
)
