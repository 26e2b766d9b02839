"""The released `internvl_chat` layout (InternVL2, MathCoder-VL, FigCodifier) -> our InternVL.

What OpenGVLab's remote code (modeling_internvl_chat.py, modeling_intern_vit.py,
modeling_internlm2.py) saves, and what it becomes here: the renames of transformers'
convert_internvl_weights_to_hf.py, so the result equals the native
InternVLForConditionalGeneration:

  vision_model.embeddings.class_embedding            vision_tower.embeddings.cls_token
  vision_model.embeddings.position_embedding         ...embeddings.position_embeddings
  vision_model.embeddings.patch_embedding.*          ...embeddings.patch_embeddings.projection.*
  vision_model.encoder.layers.{i}.attn.qkv [3D, D]   ...encoder.layer.{i}.attention.{q,k,v}_proj
                                                     (thirds: q, k, v)
  ...attn.proj / attn.{q,k}_norm                     ...attention.projection_layer / {q,k}_norm
  ...norm1 / norm2 / ls1 / ls2 / mlp.fc{1,2}         ...layernorm_before / layernorm_after /
                                                     lambda_1 / lambda_2 / mlp.fc{1,2}
  mlp1.0 / mlp1.1 / mlp1.3                           multi_modal_projector.layer_norm / linear_1 /
                                                     linear_2
  language_model.* (Qwen2ForCausalLM, LlamaForCausalLM) unchanged
  language_model.* (InternLM2ForCausalLM) -> the Llama layout:
    model.tok_embeddings / output                    model.embed_tokens / lm_head
    attention.wqkv [(KV * (G + 2)) * Dh, D]          self_attn.{q,k,v}_proj: grouped per kv head,
                                                     each group [G query heads, 1 key, 1 value]
                                                     (G = heads / kv_heads), rows Dh per head
    attention.wo / feed_forward.w1 / w3 / w2         self_attn.o_proj / mlp.gate / up / down_proj
    attention_norm / ffn_norm                        input_layernorm / post_attention_layernorm

config.json: `llm_config` (its `architectures` picks the text mapping), `vision_config`
(InternVisionConfig: qkv_bias, qk_normalization, norm_type, initializer_factor = the layer-scale
init), `downsample_ratio`, `select_layer`, `ps_version` ("v2" only: v1 is a different shuffle),
`force_image_size`, `dynamic_image_size` / `min_dynamic_patch` / `max_dynamic_patch` /
`use_thumbnail` (the tiling). The image token id is not in config.json: it is `<IMG_CONTEXT>` in
the tokenizer files next to it (added_tokens.json or tokenizer_config.json), or the knob
`image_token_id`.

InternLM2's `rope_scaling` "dynamic" (NTK) changes nothing below `max_position_embeddings` and is
dropped (positions past it are not supported). The fused q/k/v tensors are split in memory; all
other tensors stream as stored.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np

from mathjax_vl.hf import common, decoder
from mathjax_vl.hf import internvl as native
from mathjax_vl.hf import registry as hf_registry
from mathjax_vl.hf.common import ConversionError
from mathjax_vl.hf.leaves import TensorSource
from mathjax_vl.models import registry as model_registry
from mathjax_vl.models.internvit import InternViTConfig

IMAGE_CONTEXT_TOKEN = "<IMG_CONTEXT>"
TOKENIZER_FILES = ("added_tokens.json", "tokenizer_config.json", "tokenizer.json")

VISION_RENAMES = (  # released -> native, applied in order to keys under vision_model.
    (r"^vision_model\.", "vision_tower."),
    (r"\.encoder\.layers\.", ".encoder.layer."),
    (r"\.embeddings\.class_embedding$", ".embeddings.cls_token"),
    (r"\.embeddings\.position_embedding$", ".embeddings.position_embeddings"),
    (r"\.embeddings\.patch_embedding\.", ".embeddings.patch_embeddings.projection."),
    (r"\.ls(\d)$", r".lambda_\1"),
    (r"\.attn\.proj\.", ".attention.projection_layer."),
    (r"\.attn\.", ".attention."),
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
)
PROJECTOR_RENAMES = (
    (r"^mlp1\.0\.", "multi_modal_projector.layer_norm."),
    (r"^mlp1\.1\.", "multi_modal_projector.linear_1."),
    (r"^mlp1\.3\.", "multi_modal_projector.linear_2."),
)
INTERNLM2_RENAMES = (
    (r"\.tok_embeddings\.", ".embed_tokens."),
    (r"^language_model\.output\.", "language_model.lm_head."),
    (r"\.attention\.wo\.", ".self_attn.o_proj."),
    (r"\.feed_forward\.w1\.", ".mlp.gate_proj."),
    (r"\.feed_forward\.w3\.", ".mlp.up_proj."),
    (r"\.feed_forward\.w2\.", ".mlp.down_proj."),
    (r"\.attention_norm\.", ".input_layernorm."),
    (r"\.ffn_norm\.", ".post_attention_layernorm."),
)
# llm_config.architectures -> (text model_type of the mapping, renames of language_model.*)
TEXT_MODELS = {
    "InternLM2ForCausalLM": ("llama", INTERNLM2_RENAMES),
    "LlamaForCausalLM": ("llama", ()),
    "Qwen2ForCausalLM": ("qwen2", ()),
}
FUSED_VISION = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.attn\.qkv\.(weight|bias)$")
FUSED_TEXT = re.compile(r"^language_model\.model\.layers\.(\d+)\.attention\.wqkv\.(weight|bias)$")


def _rename(key: str, rules: tuple[tuple[str, str], ...]) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


class RenamedSource(TensorSource):
    """A TensorSource that reads native key names from a file stored under other names
    (`names`: native -> stored), plus the split tensors as virtual ones."""

    def __init__(self, reader: Any, source: str, names: dict[str, str], virtual: dict):
        super().__init__(reader, source, virtual)
        self.names = names

    def has(self, key: str) -> bool:
        return key in self.virtual or key in self.names

    def keys(self) -> list[str]:
        return sorted(set(self.names) | set(self.virtual))

    def check(self, key: str, shape: tuple[int, ...], dtype: Any = None) -> None:
        if key in self.virtual or key not in self.names:
            return super().check(key, shape, dtype)
        self.base.check(self.names[key], shape, dtype)

    def read(self, key: str, index: tuple[slice, ...] | None = None) -> np.ndarray:
        if key in self.virtual or key not in self.names:
            return super().read(key, index)
        return self.base.read(self.names[key], index)


# ---- config --------------------------------------------------------------------------------


def image_token_id(path: str) -> int | None:
    """The id of <IMG_CONTEXT> in the tokenizer files of `path`, or None."""
    for name in TOKENIZER_FILES:
        file = os.path.join(path, name)
        if not os.path.exists(file):
            continue
        with open(file) as f:
            data = json.load(f)
        if name == "added_tokens.json" and IMAGE_CONTEXT_TOKEN in data:
            return int(data[IMAGE_CONTEXT_TOKEN])
        table = data.get("added_tokens_decoder") or {}
        for tid, tok in table.items():
            if tok.get("content") == IMAGE_CONTEXT_TOKEN:
                return int(tid)
        for tok in data.get("added_tokens") or []:
            if tok.get("content") == IMAGE_CONTEXT_TOKEN:
                return int(tok["id"])
    return None


def text_config(llm: dict[str, Any], where: str) -> tuple[dict[str, Any], str, tuple]:
    """llm_config -> (the HF config dict of the native text model, its model_type, renames)."""
    archs = llm.get("architectures") or []
    arch = next((a for a in archs if a in TEXT_MODELS), None)
    if arch is None:
        raise ConversionError(
            f"{where}: llm_config.architectures {archs} unsupported; supported: "
            f"{sorted(TEXT_MODELS)}"
        )
    model_type, renames = TEXT_MODELS[arch]
    txt = {**llm, "model_type": model_type}
    if arch == "InternLM2ForCausalLM":  # InternLM2Config field names -> LlamaConfig's
        txt["attention_bias"] = bool(llm.get("bias", False))
        txt["mlp_bias"] = False
        scaling = llm.get("rope_scaling") or {}
        if scaling.get("type", scaling.get("rope_type")) == "dynamic":
            txt["rope_scaling"] = None  # dynamic NTK is the identity below max_position_embeddings
    return txt, model_type, renames


def vision_config(hf: dict[str, Any], where: str, **knobs: Any) -> InternViTConfig:
    """The top-level config + vision_config (InternVisionConfig) -> InternViTConfig."""
    vis = hf.get("vision_config") or {}
    size = hf.get("force_image_size") or vis.get("image_size", 448)
    dynamic = hf.get("dynamic_image_size", True)
    try:
        return InternViTConfig(
            hidden_size=vis.get("hidden_size", 1024),
            intermediate_size=vis.get("intermediate_size", 4096),
            num_layers=vis.get("num_hidden_layers", 24),
            num_heads=vis.get("num_attention_heads", 16),
            image_size=int(size),
            patch_size=int(vis.get("patch_size", 14)),
            num_channels=vis.get("num_channels", 3),
            layer_norm_eps=vis.get("layer_norm_eps", 1e-6),
            hidden_act=vis.get("hidden_act", "gelu"),
            norm_type=vis.get("norm_type", "rms_norm"),
            qkv_bias=bool(vis.get("qkv_bias", False)),
            qk_norm=bool(vis.get("qk_normalization", False)),
            layer_scale_init_value=float(vis.get("initializer_factor", 0.1)),
            min_num_tiles=int(hf.get("min_dynamic_patch", 1)) if dynamic else 1,
            max_num_tiles=int(hf.get("max_dynamic_patch", 12)) if dynamic else 1,
            use_thumbnail=bool(hf.get("use_thumbnail", True)),
            **knobs,
        )
    except (ValueError, TypeError) as e:
        raise ConversionError(f"{where}: vision_config: {e}") from e


def config_from_chat(hf: dict[str, Any], path: str, image_token: int | None = None, **knobs):
    """An internvl_chat config.json -> (InternVLConfig, language_model renames)."""
    where = os.path.join(path, common.CONFIG)
    if hf.get("ps_version", "v1") != "v2":
        raise ConversionError(
            f"{where}: ps_version {hf.get('ps_version', 'v1')!r} is not supported; supported: "
            "'v2' (v1's pixel shuffle leaves the token grid transposed)"
        )
    txt, model_type, renames = text_config(hf.get("llm_config") or {}, where)
    text_spec = hf_registry.by_model_type(model_type, "decoder", f"{where}: llm_config")
    try:
        text = text_spec.config_from_hf(txt, f"{where}: llm_config", **knobs)
    except KeyError as e:
        raise ConversionError(f"{where}: llm_config misses field {e}") from e
    vision = vision_config(hf, where, **native.split_knobs(knobs))
    token = image_token if image_token is not None else image_token_id(path)
    if token is None:
        raise ConversionError(
            f"{path}: no {IMAGE_CONTEXT_TOKEN} token in {list(TOKENIZER_FILES)}; pass the knob "
            "image_token_id (the tokenizer's id of <IMG_CONTEXT>)"
        )
    cfg = native.make_config(
        vision,
        text,
        image_token_id=token,
        downsample_ratio=hf.get("downsample_ratio", 0.5),
        feature_layer=hf.get("select_layer", -1),
        where=where,
        **knobs,
    )
    return cfg, renames


# ---- fused tensors -------------------------------------------------------------------------


def split_wqkv(w: np.ndarray, heads: int, kv_heads: int, head_dim: int, key: str, file: str):
    """InternLM2's wqkv [(KV * (G + 2)) * Dh, (D)] -> q [H * Dh, (D)], k, v [KV * Dh, (D)]."""
    groups = heads // kv_heads if kv_heads and heads % kv_heads == 0 else None
    rows = (heads + 2 * kv_heads) * head_dim
    if groups is None or w.shape[0] != rows:
        raise ConversionError(
            f"{file}: key {key!r}: shape {tuple(w.shape)} does not split into {heads} query + "
            f"2 x {kv_heads} key/value heads of {head_dim} (expected {rows} rows; llm_config "
            "num_attention_heads / num_key_value_heads / hidden_size)"
        )
    x = w.reshape(kv_heads, groups + 2, head_dim, *w.shape[1:])  # [KV, G + 2, Dh, (D)]
    q = x[:, :groups].reshape(heads * head_dim, *w.shape[1:])
    k = x[:, groups].reshape(kv_heads * head_dim, *w.shape[1:])
    v = x[:, groups + 1].reshape(kv_heads * head_dim, *w.shape[1:])
    return q, k, v


def split_qkv(w: np.ndarray, dim: int, key: str, file: str):
    """InternViT's qkv [3D, (D)] -> q, k, v [D, (D)]."""
    if w.shape[0] != 3 * dim:
        raise ConversionError(
            f"{file}: key {key!r}: shape {tuple(w.shape)} does not split into q, k, v of width "
            f"{dim} (expected {3 * dim} rows; vision_config hidden_size)"
        )
    return w[:dim], w[dim : 2 * dim], w[2 * dim :]


def _split_fused(reader: Any, cfg: Any) -> dict[str, np.ndarray]:
    """Native-named q/k/v tensors split out of every fused key (the fused keys become used)."""
    out: dict[str, np.ndarray] = {}
    t = cfg.text
    for key in reader.keys():
        if m := FUSED_VISION.match(key):
            i, kind = m.groups()
            parts = split_qkv(reader.read(key), cfg.vision.hidden_size, key, reader.file_of(key))
            pre = f"vision_tower.encoder.layer.{i}.attention"
        elif m := FUSED_TEXT.match(key):
            i, kind = m.groups()
            w = reader.read(key)
            parts = split_wqkv(
                w, t.num_attention_heads, t.num_key_value_heads, t.dim_per_head, key,
                reader.file_of(key),
            )  # fmt: skip
            if kind == "weight" and w.shape[1] != t.hidden_size:
                raise ConversionError(
                    f"{reader.file_of(key)}: key {key!r}: shape {tuple(w.shape)} has "
                    f"{w.shape[1]} columns, expected hidden_size {t.hidden_size}"
                )
            pre = f"language_model.model.layers.{i}.self_attn"
        else:
            continue
        reader.mark_used(key)
        for name, part in zip(("q_proj", "k_proj", "v_proj"), parts):
            out[f"{pre}.{name}.{kind}"] = np.ascontiguousarray(part)
    return out


def load_chat(path: str, image_token_id: int | None = None, **knobs: Any):
    """An internvl_chat dir -> (InternVLConfig, numpy params), every tensor consumed."""
    hf_cfg = common.read_config(path)
    common.check_architecture(hf_cfg, native.CHAT_ARCHITECTURES, path)
    cfg, text_renames = config_from_chat(hf_cfg, path, image_token_id, **knobs)
    reader = common.CheckpointReader(path)
    names: dict[str, str] = {}
    for key in reader.keys():
        if FUSED_VISION.match(key) or FUSED_TEXT.match(key):
            continue
        if key.startswith("vision_model."):
            names[_rename(key, VISION_RENAMES)] = key
        elif key.startswith("mlp1."):
            names[_rename(key, PROJECTOR_RENAMES)] = key
        elif key.startswith("language_model."):
            names[_rename(key, text_renames)] = key
        else:
            names[key] = key  # left for check_all_used to report
    src = RenamedSource(reader, path, names, _split_fused(reader, cfg))
    lm_head = native.LM_HEAD
    params = native.import_parts(
        src, cfg, native.LM_PREFIX, lm_head, native.VISION_PREFIX, native.PROJ_PREFIX
    )
    decoder.check_all_used(reader, f"internvl_chat ({model_registry.kind_of(cfg.text)} text)")
    return cfg, params


def convert_to_native(path: str, out: str, **knobs: Any) -> list[str]:
    """Writes the native InternVLForConditionalGeneration dir of an internvl_chat dir (weights,
    config, preprocessor config; tokenizer files transformers reads are copied along)."""
    cfg, params = load_chat(path, **knobs)
    return native.save(params, cfg, out, tokenizer_dir=path)
