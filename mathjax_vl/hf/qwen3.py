"""HF `Qwen3ForCausalLM` <-> the decoder family: q/k RMSNorm (`q_norm`/`k_norm` tensors),
`attention_bias` sets the q/k/v and o biases (false in every released Qwen3), explicit head_dim."""

from __future__ import annotations

from typing import Any

from mathjax_vl.hf import decoder
from mathjax_vl.hf import registry as hf_registry
from mathjax_vl.hf.qwen2 import qwen_window, qwen_window_to_hf
from mathjax_vl.models.qwen3 import Qwen3Config

ARCHITECTURES = ("Qwen3ForCausalLM",)
MODEL_TYPES = ("qwen3",)


def config_from_hf(hf: dict[str, Any], where: str = "<config>", **knobs: Any) -> Qwen3Config:
    fields = decoder.base_from_hf(hf, where)
    bias = bool(hf.get("attention_bias", False))
    fields.update(qkv_bias=bias, o_bias=bias, qk_norm=True, sliding_window=qwen_window(hf, where))
    fields["head_dim"] = hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]
    return decoder.make_config("qwen3", fields, knobs, where)


def config_to_hf(cfg: Qwen3Config) -> dict[str, Any]:
    if cfg.qkv_bias != cfg.o_bias or cfg.mlp_bias or not cfg.qk_norm:
        raise decoder.ConversionError(
            "cannot export as Qwen3ForCausalLM: it needs qk_norm=True, qkv_bias == o_bias "
            f"(attention_bias) and no mlp_bias; got qk_norm={cfg.qk_norm}, "
            f"qkv_bias={cfg.qkv_bias}, o_bias={cfg.o_bias}, mlp_bias={cfg.mlp_bias}"
        )
    d = decoder.base_to_hf(cfg, ARCHITECTURES[0], MODEL_TYPES[0])
    d.update(attention_bias=cfg.qkv_bias, head_dim=cfg.dim_per_head, **qwen_window_to_hf(cfg))
    return d


def load(path: str, **knobs: Any):
    return decoder.load_decoder(path, SPEC, **knobs)


def save(params: Any, cfg: Qwen3Config, path: str, **kw: Any) -> list[str]:
    return decoder.save_decoder(params, cfg, path, SPEC, **kw)


SPEC = hf_registry.register(
    hf_registry.HFArchitecture(
        kind="qwen3",
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
