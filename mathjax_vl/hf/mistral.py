"""HF `MistralForCausalLM` (MAmmoTH2-7B, ...) <-> the decoder family: no biases, a sliding window
on every layer (`sliding_window`, null = full attention), optional explicit head_dim."""

from __future__ import annotations

from typing import Any

from mathjax_vl.hf import decoder
from mathjax_vl.hf import registry as hf_registry
from mathjax_vl.models.mistral import MistralConfig

ARCHITECTURES = ("MistralForCausalLM",)
MODEL_TYPES = ("mistral",)


def config_from_hf(hf: dict[str, Any], where: str = "<config>", **knobs: Any) -> MistralConfig:
    fields = decoder.base_from_hf(hf, where)
    fields["sliding_window"] = decoder.layer_window(hf, where, hf.get("sliding_window"))
    return decoder.make_config("mistral", fields, knobs, where)


def config_to_hf(cfg: MistralConfig) -> dict[str, Any]:
    if cfg.qkv_bias or cfg.o_bias or cfg.mlp_bias or cfg.qk_norm:
        raise decoder.ConversionError(
            "cannot export as MistralForCausalLM: it has no biases and no qk_norm; got "
            f"qkv_bias={cfg.qkv_bias}, o_bias={cfg.o_bias}, mlp_bias={cfg.mlp_bias}, "
            f"qk_norm={cfg.qk_norm}"
        )
    d = decoder.base_to_hf(cfg, ARCHITECTURES[0], MODEL_TYPES[0])
    d["sliding_window"] = cfg.sliding_window
    return d


def load(path: str, **knobs: Any):
    return decoder.load_decoder(path, SPEC, **knobs)


def save(params: Any, cfg: MistralConfig, path: str, **kw: Any) -> list[str]:
    return decoder.save_decoder(params, cfg, path, SPEC, **kw)


SPEC = hf_registry.register(
    hf_registry.HFArchitecture(
        kind="mistral",
        architectures=ARCHITECTURES,
        model_types=MODEL_TYPES,
        config_from_hf=config_from_hf,
        config_to_hf=config_to_hf,
        load=load,
        save=save,
        tokenizer_files=True,
        leaves=decoder.decoder_leaves,
        anchor_suffix="embed_tokens.weight",
    )
)
