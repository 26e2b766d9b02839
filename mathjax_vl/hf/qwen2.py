"""Qwen2ForCausalLM <-> mathjax_vl Qwen2 parameters, both ways, from and to local directories.

The tensor mapping is exposed with a key prefix (`params_from_reader`, `state_from_params`) so the
Llava converter reuses it for its language model ("model.language_model." in transformers 5).
Conversion only transposes and reshapes, never rounds, so HF -> ours -> HF is bit-identical when
param_dtype equals the checkpoint dtype.

  PyTorch (out, in)                         ours
  embed_tokens.weight   [V, D]              embed_tokens/embedding [V, D]
  q_proj.weight [H*Dh, D], bias [H*Dh]      q_proj/kernel [D, H, Dh], bias [H, Dh]  (k, v alike)
  o_proj.weight [D, H*Dh]                   o_proj/kernel [H, Dh, D]
  gate/up_proj.weight [F, D]                kernel [D, F];  down_proj.weight [D, F] -> [F, D]
  *_layernorm.weight, norm.weight [D]       scale [D]
  lm_head.weight [V, D]                     lm_head/embedding [V, D] (absent when tied)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flax import traverse_util

from mathjax_vl.hf import common
from mathjax_vl.hf.leaves import Leaf, export_leaves, import_leaves
from mathjax_vl.models.precision import to_dtype
from mathjax_vl.models.qwen2 import Qwen2Config

ARCHITECTURES = ("Qwen2ForCausalLM",)
# Tensors some older checkpoints carry that the model recomputes; consumed without use.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def _layer_tensors(cfg: Qwen2Config) -> dict[str, tuple[tuple[str, ...], str, tuple, tuple]]:
    """HF suffix within a layer -> (our path within a layer, leaf kind, HF shape, our shape)."""
    d, f = cfg.hidden_size, cfg.intermediate_size
    h, kv, dh = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.dim_per_head
    return {
        "input_layernorm.weight": (("input_layernorm", "scale"), "copy", (d,), (d,)),
        "post_attention_layernorm.weight": (
            ("post_attention_layernorm", "scale"),
            "copy",
            (d,),
            (d,),
        ),
        "self_attn.q_proj.weight": (
            ("self_attn", "q_proj", "kernel"),
            "linear",
            (h * dh, d),
            (d, h, dh),
        ),
        "self_attn.q_proj.bias": (("self_attn", "q_proj", "bias"), "copy", (h * dh,), (h, dh)),
        "self_attn.k_proj.weight": (
            ("self_attn", "k_proj", "kernel"),
            "linear",
            (kv * dh, d),
            (d, kv, dh),
        ),
        "self_attn.k_proj.bias": (("self_attn", "k_proj", "bias"), "copy", (kv * dh,), (kv, dh)),
        "self_attn.v_proj.weight": (
            ("self_attn", "v_proj", "kernel"),
            "linear",
            (kv * dh, d),
            (d, kv, dh),
        ),
        "self_attn.v_proj.bias": (("self_attn", "v_proj", "bias"), "copy", (kv * dh,), (kv, dh)),
        "self_attn.o_proj.weight": (
            ("self_attn", "o_proj", "kernel"),
            "linear",
            (d, h * dh),
            (h, dh, d),
        ),
        "mlp.gate_proj.weight": (("mlp", "gate_proj", "kernel"), "linear", (f, d), (d, f)),
        "mlp.up_proj.weight": (("mlp", "up_proj", "kernel"), "linear", (f, d), (d, f)),
        "mlp.down_proj.weight": (("mlp", "down_proj", "kernel"), "linear", (d, f), (f, d)),
    }


def leaves(
    cfg: Qwen2Config, prefix: str = "model.", lm_head_key: str = "lm_head.weight"
) -> tuple[list[Leaf], dict[str, Any]]:
    """The weight-mapping table (leaves.Leaf) and our param shapes (ShapeDtypeStructs) for a
    Qwen2 with HF keys `prefix` + Qwen2Model names. Stacked layers when scan_layers, else one
    `layers_{i}` sub-tree per layer."""
    import jax

    dtype = to_dtype(cfg.param_dtype)
    v, d, n = cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers
    table = [
        Leaf(f"{prefix}embed_tokens.weight", ("embed_tokens", "embedding"), "copy", (v, d)),
        Leaf(f"{prefix}norm.weight", ("norm", "scale"), "copy", (d,)),
    ]
    shapes = {("embed_tokens", "embedding"): (v, d), ("norm", "scale"): (d,)}
    if not cfg.tie_word_embeddings:
        table.append(Leaf(lm_head_key, ("lm_head", "embedding"), "copy", (v, d)))
        shapes[("lm_head", "embedding")] = (v, d)
    for suffix, (ours, kind, hf_shape, our_shape) in _layer_tensors(cfg).items():
        if cfg.scan_layers:
            table.append(
                Leaf(f"{prefix}layers.{{i}}.{suffix}", ("layers", *ours), kind, hf_shape, n)
            )
            shapes[("layers", *ours)] = (n, *our_shape)
            continue
        for i in range(n):
            table.append(
                Leaf(f"{prefix}layers.{i}.{suffix}", (f"layers_{i}", *ours), kind, hf_shape)
            )
            shapes[(f"layers_{i}", *ours)] = our_shape
    structs = {k: jax.ShapeDtypeStruct(s, dtype) for k, s in shapes.items()}
    return table, traverse_util.unflatten_dict(structs)


def params_from_reader(
    reader: common.CheckpointReader,
    cfg: Qwen2Config,
    prefix: str = "model.",
    lm_head_key: str = "lm_head.weight",
) -> dict[str, Any]:
    """Builds our (unboxed) param tree from a reader; keys are `prefix` + HF Qwen2Model names."""
    table, shapes = leaves(cfg, prefix, lm_head_key)
    if cfg.tie_word_embeddings and reader.has(lm_head_key):  # HF ties it to the embedding
        reader.mark_used(lm_head_key)
    return import_leaves(reader, table, shapes)


def state_from_params(
    params: Any,
    cfg: Qwen2Config,
    prefix: str = "model.",
    lm_head_key: str = "lm_head.weight",
) -> dict[str, np.ndarray]:
    """Our param tree (boxed or not, with or without a "params" level) -> HF state dict."""
    import flax.linen as nn

    p = nn.meta.unbox(params)
    p = p.get("params", p)
    table, _ = leaves(cfg, prefix, lm_head_key)
    known = {lf.path for lf in table}
    left = sorted("/".join(k) for k in traverse_util.flatten_dict(p) if k not in known)
    if left:
        raise common.ConversionError(f"params: {len(left)} entries not exported: {left[:10]}")
    return export_leaves(p, table)


def load_qwen2(path: str, **knobs: Any) -> tuple[Qwen2Config, dict[str, Any]]:
    """Reads an HF Qwen2ForCausalLM directory -> (config, params) (params unboxed numpy).

    knobs: Qwen2Config fields that are ours (scan_layers, remat_policy, param_dtype, dtype).
    """
    hf_cfg = common.read_config(path)
    common.check_architecture(hf_cfg, ARCHITECTURES, path)
    try:
        cfg = Qwen2Config.from_hf(hf_cfg, **knobs)
    except (ValueError, KeyError) as e:
        raise common.ConversionError(f"{path}/config.json: {e}") from e
    reader = common.CheckpointReader(path)
    params = params_from_reader(reader, cfg)
    reader.check_all_used(IGNORED_SUFFIXES)
    return cfg, params


def save_qwen2(
    params: Any,
    cfg: Qwen2Config,
    path: str,
    max_shard_bytes: int | None = None,
    dtype: str | None = None,
) -> list[str]:
    """Writes config.json + safetensors loadable by Qwen2ForCausalLM.from_pretrained(path).

    dtype: cast tensors on export (e.g. "bfloat16"); None keeps the params' dtype.
    """
    state = state_from_params(params, cfg)
    if dtype is not None:
        state = {k: w.astype(to_dtype(dtype)) for k, w in state.items()}
    hf_cfg = cfg.to_hf()
    hf_cfg["dtype"] = str(next(iter(state.values())).dtype)
    common.write_config(path, hf_cfg)
    return common.save_safetensors(path, state, max_shard_bytes)
