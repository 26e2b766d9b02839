"""HF *ForCausalLM <-> the mathjax_vl decoder family: one declarative weight table and the config
mapping every decoder architecture shares. The architecture modules (hf/qwen2.py, qwen3.py,
llama.py, mistral.py) add only what is theirs (which knobs an HF field sets) and register.

Weight table (PyTorch (out, in) -> ours; every architecture, knobs decide which rows exist):
  embed_tokens.weight   [V, D]              embed_tokens/embedding [V, D]
  q_proj.weight [H*Dh, D], bias [H*Dh]      q_proj/kernel [D, H, Dh], bias [H, Dh]  (k, v alike)
  q_norm.weight, k_norm.weight [Dh]         self_attn/{q,k}_norm/scale [Dh]          (qk_norm)
  o_proj.weight [D, H*Dh], bias [D]         o_proj/kernel [H, Dh, D], bias [D]       (o_bias)
  gate/up_proj.weight [F, D]                kernel [D, F];  down_proj.weight [D, F] -> [F, D]
  *_layernorm.weight, norm.weight [D]       scale [D]
  lm_head.weight [V, D]                     lm_head/embedding [V, D] (absent when tied)
Conversion only transposes and reshapes, never rounds: HF -> ours -> HF is bit-identical when
param_dtype equals the checkpoint dtype.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from mathjax_vl.hf import common
from mathjax_vl.hf.common import ConversionError
from mathjax_vl.hf.leaves import Leaf, TensorSource, export_leaves, import_leaves
from mathjax_vl.models import registry as model_registry
from mathjax_vl.models.decoder import ROPE_TYPES, DecoderConfig
from mathjax_vl.models.precision import to_dtype

# Tensors some older checkpoints carry that the model recomputes; consumed without use.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
# Our knobs (not HF fields) a caller may set on import.
KNOB_FIELDS = (
    "scan_layers",
    "scan_unroll",
    "remat_policy",
    "param_dtype",
    "dtype",
    "attention_impl",
    "attention_query_block",
)


class UnsupportedFieldError(ConversionError):
    """An HF config field holds a value this mapping cannot express; names field and options."""


def _layer_leaves(cfg: DecoderConfig) -> list[tuple[str, tuple[str, ...], str, tuple]]:
    """(HF suffix within a layer, our path within a layer, leaf kind, HF shape)."""
    d, f = cfg.hidden_size, cfg.intermediate_size
    h, kv, dh = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.dim_per_head
    rows = [
        ("input_layernorm.weight", ("input_layernorm", "scale"), "copy", (d,)),
        ("post_attention_layernorm.weight", ("post_attention_layernorm", "scale"), "copy", (d,)),
    ]
    for proj, n in (("q_proj", h), ("k_proj", kv), ("v_proj", kv)):
        rows.append(
            (f"self_attn.{proj}.weight", ("self_attn", proj, "kernel"), "linear", (n * dh, d))
        )
        if cfg.qkv_bias:
            rows.append((f"self_attn.{proj}.bias", ("self_attn", proj, "bias"), "copy", (n * dh,)))
    if cfg.qk_norm:
        for norm in ("q_norm", "k_norm"):
            rows.append((f"self_attn.{norm}.weight", ("self_attn", norm, "scale"), "copy", (dh,)))
    rows.append(
        ("self_attn.o_proj.weight", ("self_attn", "o_proj", "kernel"), "linear", (d, h * dh))
    )
    if cfg.o_bias:
        rows.append(("self_attn.o_proj.bias", ("self_attn", "o_proj", "bias"), "copy", (d,)))
    for proj, shape in (("gate_proj", (f, d)), ("up_proj", (f, d)), ("down_proj", (d, f))):
        rows.append((f"mlp.{proj}.weight", ("mlp", proj, "kernel"), "linear", shape))
        if cfg.mlp_bias:
            rows.append((f"mlp.{proj}.bias", ("mlp", proj, "bias"), "copy", (shape[0],)))
    return rows


def decoder_leaves(
    cfg: DecoderConfig,
    prefix: str = "model.",
    path: tuple[str, ...] = (),
    lm_head_key: str = "lm_head.weight",
) -> list[Leaf]:
    """Every tensor of a decoder: HF keys `prefix` + Qwen2Model/LlamaModel names <-> `path`/..."""
    v, d, n = cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers
    leaves = [
        Leaf(f"{prefix}embed_tokens.weight", (*path, "embed_tokens", "embedding"), "copy", (v, d)),
        Leaf(f"{prefix}norm.weight", (*path, "norm", "scale"), "copy", (d,)),
    ]
    if not cfg.tie_word_embeddings:
        leaves.append(Leaf(lm_head_key, (*path, "lm_head", "embedding"), "copy", (v, d)))
    for suffix, ours, kind, shape in _layer_leaves(cfg):
        key = f"{prefix}layers.{{i}}.{suffix}"
        if cfg.scan_layers:
            leaves.append(Leaf(key, (*path, "layers", *ours), kind, shape, n))
        else:
            leaves += [
                Leaf(key.format(i=i), (*path, f"layers_{i}", *ours), kind, shape) for i in range(n)
            ]
    return leaves


def import_decoder(
    src: TensorSource, cfg: DecoderConfig, shapes: Any, prefix: str, path: tuple, lm_head_key: str
) -> dict:
    """Decoder tensors from `src` -> nested params under `path` (a tied lm_head is consumed)."""
    if cfg.tie_word_embeddings and src.has(lm_head_key) and hasattr(src.base, "mark_used"):
        src.base.mark_used(lm_head_key)  # HF ties it to the embedding anyway
    return import_leaves(src, decoder_leaves(cfg, prefix, path, lm_head_key), shapes)


def export_decoder(
    params: Any, cfg: DecoderConfig, prefix: str = "model.", lm_head_key: str = "lm_head.weight"
) -> dict[str, np.ndarray]:
    """Our decoder params (boxed or not) -> HF state dict; params the table misses are an error."""
    import flax.linen as nn
    from flax import traverse_util

    p = nn.meta.unbox(params)
    p = p.get("params", p)
    leaves = decoder_leaves(cfg, prefix, (), lm_head_key)
    state = export_leaves(p, leaves)
    left = sorted(
        set("/".join(k) for k in traverse_util.flatten_dict(p))
        - {"/".join(lf.path) for lf in leaves}
    )
    if left:
        raise ConversionError(f"params: {len(left)} entries not exported: {left[:10]}")
    return state


# ---- config mapping shared by the family ---------------------------------------------------


def rope_from_hf(hf: dict[str, Any], where: str) -> dict[str, Any]:
    """DecoderConfig rope fields from `rope_parameters` (transformers 5) or `rope_scaling` +
    `rope_theta` (older files); an unsupported rope type is an UnsupportedFieldError."""
    field = "rope_parameters" if hf.get("rope_parameters") else "rope_scaling"
    rope = hf.get(field) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise UnsupportedFieldError(
            f"{where}: {field}.rope_type {rope_type!r} is not supported; supported: "
            f"{list(ROPE_TYPES)}"
        )
    partial = rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if partial not in (None, 1, 1.0):
        raise UnsupportedFieldError(
            f"{where}: partial_rotary_factor {partial!r} is not supported; supported: 1.0"
        )
    out: dict[str, Any] = {
        "rope_theta": float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        "rope_type": rope_type,
    }
    if rope_type in ("linear", "llama3"):
        out["rope_factor"] = float(rope["factor"])
    if rope_type == "llama3":
        out["rope_low_freq_factor"] = float(rope["low_freq_factor"])
        out["rope_high_freq_factor"] = float(rope["high_freq_factor"])
        out["rope_original_max_position_embeddings"] = int(
            rope.get("original_max_position_embeddings") or hf["max_position_embeddings"]
        )
    return out


def rope_to_hf(cfg: DecoderConfig) -> dict[str, Any]:
    rope: dict[str, Any] = {"rope_type": cfg.rope_type, "rope_theta": cfg.rope_theta}
    if cfg.rope_type in ("linear", "llama3"):
        rope["factor"] = cfg.rope_factor
    if cfg.rope_type == "llama3":
        rope["low_freq_factor"] = cfg.rope_low_freq_factor
        rope["high_freq_factor"] = cfg.rope_high_freq_factor
        rope["original_max_position_embeddings"] = cfg.rope_original_max_position_embeddings
    return {"rope_theta": cfg.rope_theta, "rope_parameters": rope}


def layer_window(hf: dict[str, Any], where: str, window: int | None) -> int | None:
    """The one sliding window every layer uses, from `layer_types` when the file has them;
    a mix of full and sliding layers is an UnsupportedFieldError (one window for all layers)."""
    types = hf.get("layer_types")
    if not types:
        return window
    kinds = set(types)
    if kinds == {"full_attention"}:
        return None
    if kinds == {"sliding_attention"} and window is not None:
        return window
    raise UnsupportedFieldError(
        f"{where}: layer_types {sorted(kinds)} is not supported; supported: every layer "
        "'full_attention', or every layer 'sliding_attention' with sliding_window set"
    )


def base_from_hf(hf: dict[str, Any], where: str) -> dict[str, Any]:
    """The fields every decoder architecture shares (HF names = ours)."""
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise UnsupportedFieldError(
            f"{where}: hidden_act {act!r} is not supported; supported: 'silu'"
        )
    heads = hf["num_attention_heads"]
    eos = hf.get("eos_token_id")
    return {
        "vocab_size": hf["vocab_size"],
        "hidden_size": hf["hidden_size"],
        "intermediate_size": hf["intermediate_size"],
        "num_hidden_layers": hf["num_hidden_layers"],
        "num_attention_heads": heads,
        "num_key_value_heads": hf.get("num_key_value_heads") or heads,
        "head_dim": hf.get("head_dim"),
        "rms_norm_eps": hf.get("rms_norm_eps", 1e-6),
        "tie_word_embeddings": hf.get("tie_word_embeddings", False),
        "max_position_embeddings": hf.get("max_position_embeddings", 32768),
        "initializer_range": hf.get("initializer_range", 0.02),
        "bos_token_id": hf.get("bos_token_id"),
        "eos_token_id": tuple(eos) if isinstance(eos, list) else eos,
        "pad_token_id": hf.get("pad_token_id"),
        **rope_from_hf(hf, where),
    }


def base_to_hf(cfg: DecoderConfig, architecture: str, model_type: str) -> dict[str, Any]:
    eos = cfg.eos_token_id
    d = {
        "architectures": [architecture],
        "model_type": model_type,
        "hidden_act": "silu",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        **rope_to_hf(cfg),
        "rms_norm_eps": cfg.rms_norm_eps,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "max_position_embeddings": cfg.max_position_embeddings,
        "initializer_range": cfg.initializer_range,
        "attention_dropout": 0.0,
        "use_cache": True,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": list(eos) if isinstance(eos, tuple) else eos,
        "pad_token_id": cfg.pad_token_id,
        "dtype": cfg.param_dtype,
    }
    if cfg.head_dim is not None:
        d["head_dim"] = cfg.head_dim
    return d


def require_false(hf: dict[str, Any], where: str, *fields: str) -> None:
    """Fields this architecture's mapping only supports when false / absent."""
    for name in fields:
        if hf.get(name):
            raise UnsupportedFieldError(
                f"{where}: {name}={hf[name]!r} is not supported; supported: false"
            )


def make_config(kind: str, fields: dict[str, Any], knobs: dict[str, Any], where: str) -> Any:
    """The registered config class of `kind` from mapped HF fields + our knobs."""
    bad = sorted(set(knobs) - set(KNOB_FIELDS))
    if bad:
        raise ValueError(f"unknown knob(s) {bad}; knobs are {list(KNOB_FIELDS)}")
    cls = model_registry.get(kind, "decoder").config_cls
    try:
        return cls(**fields, **knobs)
    except (ValueError, TypeError) as e:
        raise ConversionError(f"{where}: {e}") from e


# ---- directory load / save used by every decoder's registry entry ----------------------------


def load_decoder(path: str, spec: Any, **knobs: Any) -> tuple[DecoderConfig, dict]:
    """An HF *ForCausalLM directory of `spec` (an hf.registry.HFArchitecture) -> (cfg, params)."""
    hf_cfg = common.read_config(path)
    common.check_architecture(hf_cfg, spec.architectures, path)
    where = os.path.join(path, common.CONFIG)
    try:
        cfg = spec.config_from_hf(hf_cfg, where, **knobs)
    except KeyError as e:
        raise ConversionError(f"{where}: missing field {e}") from e
    reader = common.CheckpointReader(path)
    src = TensorSource(reader, path)
    shapes = model_registry.abstract_params(cfg)
    params = import_decoder(src, cfg, shapes, "model.", (), "lm_head.weight")
    check_all_used(reader, spec.kind)
    return cfg, params


def check_all_used(reader: common.CheckpointReader, kind: str) -> None:
    """Leftover tensors are an error naming the file, the keys and the architecture's table."""
    try:
        reader.check_all_used(IGNORED_SUFFIXES)
    except ConversionError as e:
        raise ConversionError(
            f"{e} (the {kind} weight table, mathjax_vl.hf.decoder.decoder_leaves, maps no such "
            "tensor; a knob in config.json may be missing, e.g. attention_bias)"
        ) from e


def save_decoder(
    params: Any,
    cfg: DecoderConfig,
    path: str,
    spec: Any,
    max_shard_bytes: int | None = None,
    dtype: str | None = None,
    tokenizer_dir: str | None = None,
) -> list[str]:
    """config.json + safetensors loadable by `spec.architectures[0].from_pretrained(path)`;
    tokenizer files found in tokenizer_dir are copied along."""
    state = export_decoder(params, cfg)
    if dtype is not None:
        state = {k: w.astype(to_dtype(dtype)) for k, w in state.items()}
    hf_cfg = spec.config_to_hf(cfg)
    hf_cfg["dtype"] = str(next(iter(state.values())).dtype)
    common.write_config(path, hf_cfg)
    files = common.save_safetensors(path, state, max_shard_bytes)
    if tokenizer_dir is not None:
        from mathjax_vl.hf.registry import copy_tokenizer_files

        files += copy_tokenizer_files(tokenizer_dir, path)
    return files


def replace_knobs(cfg: DecoderConfig, **knobs: Any) -> DecoderConfig:
    return dataclasses.replace(cfg, **knobs)
