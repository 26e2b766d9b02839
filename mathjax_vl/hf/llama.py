"""HF `LlamaForCausalLM` (Llama 2 / 3.x, DeepSeek-Math) <-> the decoder family: no biases unless
`attention_bias` (q/k/v and o) / `mlp_bias`; RoPE "default", "linear" or "llama3" scaling."""

from __future__ import annotations

from typing import Any

from mathjax_vl.hf import decoder
from mathjax_vl.hf import registry as hf_registry
from mathjax_vl.models.llama import LlamaConfig

ARCHITECTURES = ("LlamaForCausalLM",)
MODEL_TYPES = ("llama",)


def config_from_hf(hf: dict[str, Any], where: str = "<config>", **knobs: Any) -> LlamaConfig:
    fields = decoder.base_from_hf(hf, where)
    tp = hf.get("pretraining_tp", 1)
    if tp not in (None, 1):
        raise decoder.UnsupportedFieldError(
            f"{where}: pretraining_tp {tp!r} is not supported; supported: 1"
        )
    bias = bool(hf.get("attention_bias", False))
    fields.update(qkv_bias=bias, o_bias=bias, mlp_bias=bool(hf.get("mlp_bias", False)))
    return decoder.make_config("llama", fields, knobs, where)


def config_to_hf(cfg: LlamaConfig) -> dict[str, Any]:
    if cfg.qkv_bias != cfg.o_bias or cfg.qk_norm or cfg.sliding_window is not None:
        raise decoder.ConversionError(
            "cannot export as LlamaForCausalLM: it needs qkv_bias == o_bias (attention_bias), "
            f"no qk_norm and no sliding window; got qkv_bias={cfg.qkv_bias}, "
            f"o_bias={cfg.o_bias}, qk_norm={cfg.qk_norm}, sliding_window={cfg.sliding_window}"
        )
    d = decoder.base_to_hf(cfg, ARCHITECTURES[0], MODEL_TYPES[0])
    d.update(attention_bias=cfg.qkv_bias, mlp_bias=cfg.mlp_bias, pretraining_tp=1)
    return d


def load(path: str, **knobs: Any):
    return decoder.load_decoder(path, SPEC, **knobs)


def save(params: Any, cfg: LlamaConfig, path: str, **kw: Any) -> list[str]:
    return decoder.save_decoder(params, cfg, path, SPEC, **kw)


SPEC = hf_registry.register(
    hf_registry.HFArchitecture(
        kind="llama",
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
