"""HF `InternVLForConditionalGeneration` / `InternVLVisionModel` <-> our InternVL / InternViT.

The text model is any registered decoder mapping (`text_config.model_type`: qwen2, llama, ...);
the vision tower is registered here as "internvl_vision". Import discovers the key prefixes from
the file (transformers 5 writes "language_model.model.*", "language_model.lm_head.weight",
"vision_tower.*", "multi_modal_projector.*"; the in-memory "model.*" names load too); export
writes what the installed transformers saves, so HF -> ours -> HF is bit-identical.

The released `internvl_chat` layout (MathCoder-VL, FigCodifier, InternVL2) is a second reader
of the same "internvl" kind: mathjax_vl.hf.internvl_chat, chosen by config.json's architecture.

Vision weight table (torch -> ours, per layer i stacked on our `layers` axis):
  embeddings.cls_token [1, 1, D]                        cls_token [D]
  embeddings.position_embeddings [1, N + 1, D]          position_embeddings [N + 1, D]
  embeddings.patch_embeddings.projection.{weight,bias}  embeddings/patch_embedding (conv)
  encoder.layer.{i}.attention.{q,k,v}_proj [D, D]       encoder/attention/{q,k,v}_proj [D, H, Dh]
  encoder.layer.{i}.attention.projection_layer          encoder/attention/projection_layer
  encoder.layer.{i}.attention.{q,k}_norm.weight [D]     encoder/attention/{q,k}_norm/scale
  encoder.layer.{i}.layernorm_{before,after}            encoder/layernorm_{before,after}
  encoder.layer.{i}.lambda_{1,2} [D]                    encoder/lambda_{1,2}
  encoder.layer.{i}.mlp.fc{1,2}                         encoder/mlp/fc{1,2}
  layernorm.{weight,bias} (use_mean_pooling=False)      layernorm
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax.linen as nn
import numpy as np

from mathjax_vl.hf import common, decoder
from mathjax_vl.hf import registry as hf_registry
from mathjax_vl.hf.common import ConversionError
from mathjax_vl.hf.leaves import (
    Leaf,
    TensorSource,
    export_leaves,
    find_prefix,
    import_leaves,
    layer_norm_leaves,
    linear_leaves,
)
from mathjax_vl.models import registry as model_registry
from mathjax_vl.models.internvit import InternViTConfig
from mathjax_vl.models.internvl import PROJECTOR_KIND, InternVLConfig
from mathjax_vl.models.projectors import ProjectorConfig

ARCHITECTURES = ("InternVLForConditionalGeneration",)
CHAT_ARCHITECTURES = ("InternVLChatModel",)  # the released layout (hf.internvl_chat)
VISION_ARCHITECTURES = ("InternVLVisionModel",)
PATCH_SUFFIX = "embeddings.patch_embeddings.projection.weight"
# Layout written on export (transformers 5 save_pretrained).
LM_PREFIX = "language_model.model."
LM_HEAD = "language_model.lm_head.weight"
VISION_PREFIX = "vision_tower."
PROJ_PREFIX = "multi_modal_projector."
IMAGE_PROCESSOR = "GotOcr2ImageProcessor"

# (our field, HF field, HF default); image_size / patch_size are [h, w] lists in HF files
VISION_FIELDS = [
    ("hidden_size", "hidden_size", 1024),
    ("intermediate_size", "intermediate_size", 4096),
    ("num_layers", "num_hidden_layers", 24),
    ("num_heads", "num_attention_heads", 16),
    ("num_channels", "num_channels", 3),
    ("layer_norm_eps", "layer_norm_eps", 1e-6),
    ("hidden_act", "hidden_act", "gelu"),
    ("norm_type", "norm_type", "layer_norm"),
    ("qkv_bias", "attention_bias", False),
    ("qk_norm", "use_qk_norm", False),
    ("layer_scale_init_value", "layer_scale_init_value", 0.1),
    ("use_mean_pooling", "use_mean_pooling", True),
]


def _square(value: Any, field: str, where: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ConversionError(
                f"{where}: {field} {list(value)} is not square; supported: h == w"
            )
        value = value[0]
    return int(value)


def vision_from_hf(hf: dict[str, Any], where: str = "<config>", **knobs: Any) -> InternViTConfig:
    """An HF InternVLVisionConfig dict -> InternViTConfig (knobs: dtype, param_dtype, remat)."""
    if hf.get("use_mask_token"):
        raise ConversionError(f"{where}: use_mask_token=true is not supported (pretraining only)")
    if hf.get("use_absolute_position_embeddings", True) is False:
        raise ConversionError(f"{where}: use_absolute_position_embeddings=false is not supported")
    kw = {ours: hf.get(theirs, default) for ours, theirs, default in VISION_FIELDS}
    kw["image_size"] = _square(hf.get("image_size", 448), "image_size", where)
    kw["patch_size"] = _square(hf.get("patch_size", 14), "patch_size", where)
    try:
        return InternViTConfig(**kw, **knobs)
    except (ValueError, TypeError) as e:
        raise ConversionError(f"{where}: {e}") from e


def vision_to_hf(cfg: InternViTConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"model_type": "internvl_vision"}
    out.update({theirs: getattr(cfg, ours) for ours, theirs, _ in VISION_FIELDS})
    out.update(
        image_size=[cfg.image_size, cfg.image_size],
        patch_size=[cfg.patch_size, cfg.patch_size],
        use_absolute_position_embeddings=True,
        use_mask_token=False,
        attention_dropout=0.0,
        projection_dropout=0.0,
        hidden_dropout_prob=0.0,
    )
    return out


def vision_leaves(cfg: InternViTConfig, hf_prefix: str = "", path=()) -> list[Leaf]:
    """Every tensor of an InternVLVisionModel (the module docstring's table)."""
    d, m, n, pre = cfg.hidden_size, cfg.intermediate_size, cfg.num_layers, hf_prefix
    emb = f"{pre}embeddings."
    leaves = [
        Leaf(f"{emb}cls_token", (*path, "cls_token"), "copy", (1, 1, d)),
        Leaf(
            f"{emb}position_embeddings",
            (*path, "position_embeddings"),
            "copy",
            (1, cfg.num_patches + 1, d),
        ),
        Leaf(
            f"{emb}patch_embeddings.projection.weight",
            (*path, "embeddings", "patch_embedding", "kernel"),
            "conv",
            (d, cfg.num_channels, cfg.patch_size, cfg.patch_size),
        ),
        Leaf(
            f"{emb}patch_embeddings.projection.bias",
            (*path, "embeddings", "patch_embedding", "bias"),
            "copy",
            (d,),
        ),
    ]
    layer, ours = f"{pre}encoder.layer.{{i}}.", (*path, "encoder")

    def add(name: str, param: str, kind: str, shape: tuple, our: str) -> None:
        leaves.append(Leaf(f"{layer}{name}.{param}", (*ours, *our.split("/")), kind, shape, n))

    for proj in ("q_proj", "k_proj", "v_proj"):
        add(f"attention.{proj}", "weight", "linear", (d, d), f"attention/{proj}/kernel")
        if cfg.qkv_bias:
            add(f"attention.{proj}", "bias", "copy", (d,), f"attention/{proj}/bias")
    if cfg.qk_norm:
        for norm in ("q_norm", "k_norm"):
            add(f"attention.{norm}", "weight", "copy", (d,), f"attention/{norm}/scale")
    add(
        "attention.projection_layer",
        "weight",
        "linear",
        (d, d),
        "attention/projection_layer/kernel",
    )
    add("attention.projection_layer", "bias", "copy", (d,), "attention/projection_layer/bias")
    for norm in ("layernorm_before", "layernorm_after"):
        add(norm, "weight", "copy", (d,), f"{norm}/scale")
        if cfg.norm_type == "layer_norm":
            add(norm, "bias", "copy", (d,), f"{norm}/bias")
    for lam in ("lambda_1", "lambda_2"):
        leaves.append(Leaf(f"{layer}{lam}", (*ours, lam), "copy", (d,), n))
    add("mlp.fc1", "weight", "linear", (m, d), "mlp/fc1/kernel")
    add("mlp.fc1", "bias", "copy", (m,), "mlp/fc1/bias")
    add("mlp.fc2", "weight", "linear", (d, m), "mlp/fc2/kernel")
    add("mlp.fc2", "bias", "copy", (d,), "mlp/fc2/bias")
    if not cfg.use_mean_pooling:
        leaves += layer_norm_leaves(f"{pre}layernorm", (*path, "layernorm"), d)
    return leaves


def projector_leaves(cfg: InternVLConfig, prefix: str) -> list[Leaf]:
    p, scope = cfg.projector, model_registry.spec_of(cfg.projector).scope
    return (
        layer_norm_leaves(f"{prefix}layer_norm", (scope, "layer_norm"), p.input_dim)
        + linear_leaves(f"{prefix}linear_1", (scope, "linear_1"), p.output_dim, p.input_dim, True)
        + linear_leaves(f"{prefix}linear_2", (scope, "linear_2"), p.output_dim, p.output_dim, True)
    )


# ---- the composite's config ----------------------------------------------------------------


def make_config(
    vision: InternViTConfig,
    text: Any,
    *,
    image_token_id: int,
    downsample_ratio: float = 0.5,
    act: str = "gelu",
    feature_layer: int = -1,
    select: str = "default",
    where: str = "<config>",
    **knobs: Any,
) -> InternVLConfig:
    """InternVLConfig from its parts (shared by the native and the released-layout readers)."""
    proj_knobs = {k: v for k, v in knobs.items() if k in ("dtype", "param_dtype")}
    r = round(1.0 / downsample_ratio)
    try:
        return InternVLConfig(
            vision=vision,
            text=text,
            projector=ProjectorConfig(
                kind=PROJECTOR_KIND,
                input_dim=vision.hidden_size * r * r,
                output_dim=text.hidden_size,
                act=act,
                **proj_knobs,
            ),
            image_token_id=int(image_token_id),
            vision_feature_layer=feature_layer,
            vision_feature_select_strategy=select,
            downsample_ratio=float(downsample_ratio),
        )
    except (ValueError, TypeError) as e:
        raise ConversionError(f"{where}: {e}") from e


def split_knobs(knobs: dict[str, Any]) -> dict[str, Any]:
    """The knobs a tower takes (decoder-only ones such as scan_layers go to the text model)."""
    return {k: v for k, v in knobs.items() if k in ("dtype", "param_dtype", "remat_policy")}


def config_from_hf(hf: dict[str, Any], path: str = "<config>", **knobs: Any) -> InternVLConfig:
    """InternVLConfig dict -> ours. knobs: dtype / param_dtype / remat_policy (all parts) and the
    decoder knobs (text model)."""
    where = f"{path}/config.json"
    txt = dict(hf.get("text_config") or {"model_type": "qwen2"})
    text_spec = hf_registry.by_model_type(txt.get("model_type"), "decoder", f"{path}: text_config")
    vision = vision_from_hf(
        hf.get("vision_config") or {}, f"{where}: vision_config", **split_knobs(knobs)
    )
    if hf.get("tie_word_embeddings", True) and not txt.get("tie_word_embeddings"):
        txt["tie_word_embeddings"] = True  # InternVLConfig ties by default (the top-level flag)
    try:
        text = text_spec.config_from_hf(txt, f"{where}: text_config", **knobs)
    except KeyError as e:
        raise ConversionError(f"{where}: text_config misses field {e}") from e
    return make_config(
        vision,
        text,
        image_token_id=hf.get("image_token_id", 151667),
        downsample_ratio=hf.get("downsample_ratio", 0.5),
        act=hf.get("projector_hidden_act", "gelu"),
        feature_layer=hf.get("vision_feature_layer", -1),
        select=hf.get("vision_feature_select_strategy", "default"),
        where=where,
        **knobs,
    )


def config_to_hf(cfg: InternVLConfig) -> dict[str, Any]:
    text = hf_registry.spec_of(cfg.text).config_to_hf(cfg.text)
    text.pop("architectures", None)
    text.pop("dtype", None)
    return {
        "architectures": list(ARCHITECTURES),
        "model_type": "internvl",
        "image_token_id": cfg.image_token_id,
        "image_seq_length": cfg.image_seq_length,
        "downsample_ratio": cfg.downsample_ratio,
        "projector_hidden_act": cfg.projector.act,
        "vision_feature_layer": cfg.vision_feature_layer,
        "vision_feature_select_strategy": cfg.vision_feature_select_strategy,
        "tie_word_embeddings": cfg.text.tie_word_embeddings,
        "text_config": text,
        "vision_config": vision_to_hf(cfg.vision),
    }


# ---- weights -------------------------------------------------------------------------------


def _scope(cfg: Any) -> str:
    return model_registry.spec_of(cfg).scope


def import_parts(
    src: TensorSource, cfg: InternVLConfig, lm: str, lm_head: str, vis: str, proj: str
) -> dict:
    """Our params from a TensorSource in the native naming under the given key prefixes."""
    shapes = model_registry.abstract_params(cfg)
    params = decoder.import_decoder(src, cfg.text, shapes, lm, (_scope(cfg.text),), lm_head)
    leaves = vision_leaves(cfg.vision, vis, (_scope(cfg.vision),)) + projector_leaves(cfg, proj)
    params.update(import_leaves(src, leaves, shapes))
    return params


def load_native(path: str, **knobs: Any) -> tuple[InternVLConfig, dict]:
    """An InternVLForConditionalGeneration dir -> (InternVLConfig, numpy params)."""
    hf_cfg = common.read_config(path)
    common.check_architecture(hf_cfg, ARCHITECTURES, path)
    cfg = config_from_hf(hf_cfg, path, **knobs)
    reader = common.CheckpointReader(path)
    keys = reader.keys()
    lm = find_prefix(keys, hf_registry.spec_of(cfg.text).anchor_suffix, path)
    lm_head = next((k for k in (LM_HEAD, "lm_head.weight") if reader.has(k)), LM_HEAD)
    vis = find_prefix(keys, PATCH_SUFFIX, path)
    proj = find_prefix(keys, "layer_norm.weight", path, contains="multi_modal_projector")
    params = import_parts(TensorSource(reader, path), cfg, lm, lm_head, vis, proj)
    decoder.check_all_used(reader, f"internvl ({model_registry.kind_of(cfg.text)} text)")
    return cfg, params


def load(path: str, **knobs: Any) -> tuple[InternVLConfig, dict]:
    """Native or released (`internvl_chat`) layout, by config.json's architecture."""
    archs = common.read_config(path).get("architectures") or []
    from mathjax_vl.hf import internvl_chat

    readers = {a: load_native for a in ARCHITECTURES}
    readers.update({a: internvl_chat.load_chat for a in CHAT_ARCHITECTURES})
    reader = next((readers[a] for a in archs if a in readers), load_native)
    return reader(path, **knobs)


def state_from_params(params: Any, cfg: InternVLConfig) -> dict[str, np.ndarray]:
    """Our params -> the flat state dict transformers 5 saves."""
    p = nn.meta.unbox(params)
    p = p.get("params", p)
    state = decoder.export_decoder(p[_scope(cfg.text)], cfg.text, LM_PREFIX, LM_HEAD)
    state.update(export_leaves(p, vision_leaves(cfg.vision, VISION_PREFIX, (_scope(cfg.vision),))))
    state.update(export_leaves(p, projector_leaves(cfg, PROJ_PREFIX)))
    return state


def preprocessor_config(cfg: InternVLConfig) -> dict[str, Any]:
    """GotOcr2ImageProcessor settings matching the tower (InternVL's: tiles + thumbnail)."""
    v = cfg.vision
    return {
        "image_processor_type": IMAGE_PROCESSOR,
        "do_resize": True,
        "size": {"height": v.image_size, "width": v.image_size},
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(v.image_mean),
        "image_std": list(v.image_std),
        "do_convert_rgb": True,
        "crop_to_patches": v.max_num_tiles > 1,
        "min_patches": v.min_num_tiles,
        "max_patches": v.max_num_tiles,
    }


def save(
    params: Any,
    cfg: InternVLConfig,
    path: str,
    tokenizer_dir: str | None = None,
    max_shard_bytes: int | None = None,
    dtype: str | None = None,
) -> list[str]:
    """A dir InternVLForConditionalGeneration.from_pretrained loads (+ tokenizer files, and a
    preprocessor_config.json matching the tower when none is copied)."""
    state = state_from_params(params, cfg)
    if dtype is not None:
        from mathjax_vl.models.precision import to_dtype

        state = {k: w.astype(to_dtype(dtype)) for k, w in state.items()}
    hf_cfg = config_to_hf(cfg)
    hf_cfg["dtype"] = str(next(iter(state.values())).dtype)
    common.write_config(path, hf_cfg)
    files = common.save_safetensors(path, state, max_shard_bytes)
    if tokenizer_dir is not None:
        files += hf_registry.copy_tokenizer_files(tokenizer_dir, path)
    if not os.path.exists(os.path.join(path, "preprocessor_config.json")):
        with open(os.path.join(path, "preprocessor_config.json"), "w") as f:
            json.dump(preprocessor_config(cfg), f, indent=2)
        files.append("preprocessor_config.json")
    return files


# ---- the tower on its own ------------------------------------------------------------------


def vision_config_from_hf(hf: dict, path: str, **knobs: Any) -> InternViTConfig:
    return vision_from_hf(hf, f"{path}/config.json", **split_knobs(knobs))


def load_vision(path: str, **knobs: Any) -> tuple[InternViTConfig, dict]:
    hf_cfg = common.read_config(path)
    common.check_architecture(hf_cfg, VISION_ARCHITECTURES, path)
    cfg = vision_config_from_hf(hf_cfg, path, **knobs)
    reader = common.CheckpointReader(path)
    prefix = find_prefix(reader.keys(), PATCH_SUFFIX, path)
    shapes = model_registry.abstract_params(cfg)
    params = import_leaves(TensorSource(reader, path), vision_leaves(cfg, prefix), shapes)
    reader.check_all_used()
    return cfg, params


def save_vision(params: Any, cfg: InternViTConfig, path: str, **kw: Any) -> list[str]:
    state = export_leaves(nn.meta.unbox(params), vision_leaves(cfg))
    hf_cfg = {**vision_to_hf(cfg), "architectures": list(VISION_ARCHITECTURES)}
    hf_cfg["dtype"] = str(next(iter(state.values())).dtype)
    common.write_config(path, hf_cfg)
    return common.save_safetensors(path, state)


hf_registry.register(
    hf_registry.HFArchitecture(
        kind="internvl_vision",
        architectures=VISION_ARCHITECTURES,
        model_types=("internvl_vision",),
        config_from_hf=vision_config_from_hf,
        config_to_hf=vision_to_hf,
        load=load_vision,
        save=save_vision,
        leaves=vision_leaves,
        anchor_suffix=PATCH_SUFFIX,
        processor_class=IMAGE_PROCESSOR,
    )
)
hf_registry.register(
    hf_registry.HFArchitecture(
        kind="internvl",
        architectures=ARCHITECTURES + CHAT_ARCHITECTURES,
        model_types=("internvl", "internvl_chat"),
        config_from_hf=config_from_hf,
        config_to_hf=config_to_hf,
        load=load,
        save=save,
        tokenizer_files=True,
    )
)
