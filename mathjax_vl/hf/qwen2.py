"""HF `Qwen2ForCausalLM` (Qwen2 / Qwen2.5) <-> the mathjax_vl decoder family.

The weight table is the family's (mathjax_vl.hf.decoder.decoder_leaves, with q/k/v biases); this
module maps the config fields that are Qwen2's and registers the architecture. A sliding window
is supported when every layer uses it (`use_sliding_window` with `max_window_layers` 0, or
`layer_types` all "sliding_attention"); a full/sliding mix is refused by name.
"""

from __future__ import annotations

from typing import Any

from mathjax_vl.hf import common, decoder
from mathjax_vl.hf import registry as hf_registry
from mathjax_vl.models.qwen2 import Qwen2Config

ARCHITECTURES = ("Qwen2ForCausalLM",)
MODEL_TYPES = ("qwen2",)
IGNORED_SUFFIXES = decoder.IGNORED_SUFFIXES


def qwen_window(hf: dict[str, Any], where: str) -> int | None:
    """Qwen2/Qwen3 sliding window: on for layers >= max_window_layers when use_sliding_window."""
    window = hf.get("sliding_window") if hf.get("use_sliding_window") else None
    if hf.get("layer_types"):
        return decoder.layer_window(hf, where, hf.get("sliding_window"))
    if window is None:
        return None
    first = hf.get("max_window_layers", 0)
    if first >= hf["num_hidden_layers"]:
        return None
    if first > 0:
        raise decoder.UnsupportedFieldError(
            f"{where}: max_window_layers {first} (full attention below, sliding above) is not "
            f"supported; supported: 0 (every layer slides) or >= num_hidden_layers (none does)"
        )
    return window


def config_from_hf(hf: dict[str, Any], where: str = "<config>", **knobs: Any) -> Qwen2Config:
    fields = decoder.base_from_hf(hf, where)
    fields["sliding_window"] = qwen_window(hf, where)
    return decoder.make_config("qwen2", fields, knobs, where)


def qwen_window_to_hf(cfg: Any) -> dict[str, Any]:
    if cfg.sliding_window is None:
        return {"use_sliding_window": False}
    return {
        "use_sliding_window": True,
        "sliding_window": cfg.sliding_window,
        "max_window_layers": 0,
    }


def config_to_hf(cfg: Qwen2Config) -> dict[str, Any]:
    """The config.json dict of an equivalent HF Qwen2ForCausalLM."""
    if not cfg.qkv_bias or cfg.o_bias or cfg.mlp_bias or cfg.qk_norm:
        raise common.ConversionError(
            "cannot export as Qwen2ForCausalLM: it has q/k/v biases only and no qk_norm; got "
            f"qkv_bias={cfg.qkv_bias}, o_bias={cfg.o_bias}, mlp_bias={cfg.mlp_bias}, "
            f"qk_norm={cfg.qk_norm}"
        )
    return {**decoder.base_to_hf(cfg, ARCHITECTURES[0], MODEL_TYPES[0]), **qwen_window_to_hf(cfg)}


def params_from_reader(
    reader: common.CheckpointReader,
    cfg: Any,
    prefix: str = "model.",
    lm_head_key: str = "lm_head.weight",
) -> dict[str, Any]:
    """Our (unboxed) decoder params from a reader; keys are `prefix` + HF model names."""
    from mathjax_vl.hf.leaves import TensorSource
    from mathjax_vl.models import registry

    src = TensorSource(reader, getattr(reader, "path", "state dict"))
    return decoder.import_decoder(src, cfg, registry.abstract_params(cfg), prefix, (), lm_head_key)


def state_from_params(
    params: Any, cfg: Any, prefix: str = "model.", lm_head_key: str = "lm_head.weight"
) -> dict:
    """Our decoder params -> HF state dict (any decoder kind; kept under its historical name)."""
    return decoder.export_decoder(params, cfg, prefix, lm_head_key)


def load_qwen2(path: str, **knobs: Any) -> tuple[Qwen2Config, dict[str, Any]]:
    """Reads an HF Qwen2ForCausalLM directory -> (config, params) (params unboxed numpy).

    knobs: our own fields (scan_layers, remat_policy, param_dtype, dtype, ...).
    """
    return decoder.load_decoder(path, SPEC, **knobs)


def save_qwen2(
    params: Any,
    cfg: Qwen2Config,
    path: str,
    max_shard_bytes: int | None = None,
    dtype: str | None = None,
    tokenizer_dir: str | None = None,
) -> list[str]:
    """Writes config.json + safetensors loadable by Qwen2ForCausalLM.from_pretrained(path)."""
    return decoder.save_decoder(params, cfg, path, SPEC, max_shard_bytes, dtype, tokenizer_dir)


SPEC = hf_registry.register(
    hf_registry.HFArchitecture(
        kind="qwen2",
        architectures=ARCHITECTURES,
        model_types=MODEL_TYPES,
        config_from_hf=config_from_hf,
        config_to_hf=config_to_hf,
        load=load_qwen2,
        save=save_qwen2,
        tokenizer_files=True,
        leaves=decoder.decoder_leaves,
        anchor_suffix="embed_tokens.weight",
    )
)
