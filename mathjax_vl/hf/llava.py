"""HF `LlavaForConditionalGeneration` (any registered tower + any registered decoder) <-> our VLM.

The parts are registry lookups: `vision_config.model_type` and `text_config.model_type` name the
tower's and the decoder's HF mapping (mathjax_vl.hf.registry), whose weight tables are placed
under the VLM scopes the model registry declares.

Import discovers the key prefixes from the files, so the layouts transformers has written all
load: "language_model.model.*" / "vision_tower.*" (what transformers 5 saves),
"model.language_model.*" / "model.vision_tower.vision_model.*" / "lm_head.weight" (4.5x), and
"vision_tower.vision_model.*".
Export writes the layout the installed transformers saves, so HF -> ours -> HF is bit-identical
for directories it wrote. A projector Llava cannot express (Math-PUMA's SwiGLU aligner) is
written by that projector's exporter (PROJECTORS: hf.llava_swiglu, a Llava with remote code), and
the same readers import it back; Math-PUMA's released Qwen2vlm layout is read by hf.puma_released.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import numpy as np

from mathjax_vl.hf import common, decoder
from mathjax_vl.hf import registry as hf_registry
from mathjax_vl.hf.common import ConversionError
from mathjax_vl.hf.leaves import (
    TensorSource,
    export_leaves,
    find_prefix,
    import_leaves,
    linear_leaves,
)
from mathjax_vl.hf.registry import TOKENIZER_FILES  # noqa: F401  (historical import path)
from mathjax_vl.models import registry as model_registry
from mathjax_vl.models.projectors import ProjectorConfig
from mathjax_vl.models.vlm import VLMConfig

ARCHITECTURES = ("LlavaForConditionalGeneration",)
# Other layouts this entry reads: architecture -> "module:function" (path, **knobs) -> (cfg, params)
READERS = {
    "LlavaSwiGLUForConditionalGeneration": "mathjax_vl.hf.llava_swiglu:load",
    "Qwen2vlmForConditionalGeneration": "mathjax_vl.hf.puma_released:load",
}
OTHER_MODEL_TYPES = ("llava_swiglu", "qwen2vlm")


@dataclasses.dataclass(frozen=True)
class ProjectorLayout:
    """How one projector kind's weights are named, and which module exports a VLM with it (its
    `save(params, cfg, path, **kw)` and `config_to_hf(cfg)`; None: Llava itself)."""

    leaves: Callable[..., list]  # (ProjectorConfig, hf_prefix, scope) -> [Leaf]
    anchor: str  # a tensor suffix locating the projector's key prefix
    exporter: str | None = None


def _mlp_leaves(p: ProjectorConfig, prefix: str, scope: str) -> list:
    return linear_leaves(
        f"{prefix}linear_1", (scope, "linear_1"), p.inner_dim, p.input_dim, p.use_bias
    ) + linear_leaves(
        f"{prefix}linear_2", (scope, "linear_2"), p.output_dim, p.inner_dim, p.use_bias
    )


def _swiglu_leaves(p: ProjectorConfig, prefix: str, scope: str) -> list:
    out = []
    for name, o, i in (("gate_proj", p.inner_dim, p.input_dim), ("up_proj", p.inner_dim,
                       p.input_dim), ("down_proj", p.output_dim, p.inner_dim)):  # fmt: skip
        out += linear_leaves(f"{prefix}{name}", (scope, name), o, i, False)
    return out


# projector kind -> its weight names and exporter (every registered projector kind has one)
PROJECTORS = {
    "mlp": ProjectorLayout(_mlp_leaves, "linear_1.weight"),
    "swiglu": ProjectorLayout(_swiglu_leaves, "gate_proj.weight", "mathjax_vl.hf.llava_swiglu"),
}


def _function(ref: str) -> Callable[..., Any]:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def projector_layout(p: ProjectorConfig) -> ProjectorLayout:
    if p.kind not in PROJECTORS:
        raise ConversionError(
            f"projector kind {p.kind!r} has no HF weight layout; known: {sorted(PROJECTORS)}"
        )
    return PROJECTORS[p.kind]


# Layout written on export (transformers 5 save_pretrained).
LM_PREFIX = "language_model.model."
LM_HEAD = "language_model.lm_head.weight"
VISION_PREFIX = "vision_tower."
PROJ_PREFIX = "multi_modal_projector."


def config_from_hf(hf: dict[str, Any], path: str = "<config>", **knobs: Any) -> VLMConfig:
    """LlavaConfig dict -> VLMConfig. knobs: dtype / param_dtype / remat_policy for all parts."""
    vis, txt = hf.get("vision_config") or {}, dict(hf.get("text_config") or {})
    text_spec = hf_registry.by_model_type(txt.get("model_type"), "decoder", f"{path}: text_config")
    tower = hf_registry.by_model_type(vis.get("model_type"), "tower", f"{path}: vision_config")
    # Decoder-only knobs (scan_layers) go to the text config; the tower takes the shared ones.
    vis_knobs = {k: v for k, v in knobs.items() if k in ("dtype", "param_dtype", "remat_policy")}
    try:
        vision = tower.config_from_hf(vis, f"{path}: vision_config", **vis_knobs)
        if hf.get("tie_word_embeddings") and not txt.get("tie_word_embeddings"):
            txt["tie_word_embeddings"] = True
        text = text_spec.config_from_hf(txt, f"{path}: text_config", **knobs)
        layer = hf.get("vision_feature_layer", -2)
        layers = (layer,) if isinstance(layer, int) else tuple(layer)
        proj_knobs = {k: v for k, v in knobs.items() if k in ("dtype", "param_dtype")}
        # projector_type / projector_intermediate_size: written by hf.llava_swiglu (not Llava's)
        projector = ProjectorConfig(
            kind=hf.get("projector_type", "mlp"),
            input_dim=vision.hidden_size * len(layers),
            output_dim=text.hidden_size,
            hidden_dim=hf.get("projector_intermediate_size"),
            act=hf.get("projector_hidden_act", "gelu"),
            use_bias=hf.get("multimodal_projector_bias", True),
            **proj_knobs,
        )
        cfg = VLMConfig(
            vision=vision,
            text=text,
            projector=projector,
            image_token_id=hf.get("image_token_index", hf.get("image_token_id", 32000)),
            vision_feature_layer=layer if isinstance(layer, int) else tuple(layer),
            vision_feature_select_strategy=hf.get("vision_feature_select_strategy", "default"),
        )
    except (ValueError, TypeError, KeyError) as e:
        if isinstance(e, ConversionError):
            raise
        raise ConversionError(f"{path}/config.json: {e}") from e
    # image_seq_length is a processor hint (HF models ignore it); ours derives it.
    return cfg


def config_to_hf(cfg: VLMConfig) -> dict[str, Any]:
    """VLMConfig -> LlavaConfig dict (or the projector exporter's config, PROJECTORS)."""
    exporter = projector_layout(cfg.projector).exporter
    if exporter is not None:
        return _function(f"{exporter}:config_to_hf")(cfg)
    check_exportable(cfg)
    return llava_dict(cfg)


def llava_dict(cfg: VLMConfig) -> dict[str, Any]:
    """The LlavaConfig fields of any VLMConfig (no check that Llava can hold its projector)."""
    text = hf_registry.spec_of(cfg.text).config_to_hf(cfg.text)
    text.pop("architectures", None)
    vision = hf_registry.spec_of(cfg.vision).config_to_hf(cfg.vision)
    layer = cfg.vision_feature_layer
    return {
        "architectures": list(ARCHITECTURES),
        "model_type": "llava",
        "image_token_index": cfg.image_token_id,
        "image_seq_length": cfg.image_seq_length,
        "projector_hidden_act": cfg.projector.act,
        "multimodal_projector_bias": cfg.projector.use_bias,
        "vision_feature_layer": layer if isinstance(layer, int) else list(layer),
        "vision_feature_select_strategy": cfg.vision_feature_select_strategy,
        "tie_word_embeddings": cfg.text.tie_word_embeddings,
        "text_config": text,
        "vision_config": vision,
    }


def check_exportable(cfg: VLMConfig) -> None:
    """Whether LlavaForConditionalGeneration itself can hold the projector."""
    p = cfg.projector
    if projector_layout(p).exporter is not None:
        raise ConversionError(
            f"projector kind {p.kind!r} has no LlavaMultiModalProjector equivalent; it is "
            f"exported by {projector_layout(p).exporter}.save (save_llava picks it)"
        )
    if p.inner_dim != p.output_dim:
        raise ConversionError(
            f"cannot export an MLP projector with hidden_dim {p.inner_dim} != output_dim "
            f"{p.output_dim}: Llava's linear_1 maps to the text hidden size"
        )


def _scope(cfg: object) -> str:
    return model_registry.spec_of(cfg).scope


def _vision_leaves(cfg: VLMConfig, prefix: str):
    return hf_registry.spec_of(cfg.vision).leaves(cfg.vision, prefix, (_scope(cfg.vision),))


def _projector_leaves(cfg: VLMConfig, prefix: str):
    p = cfg.projector
    return projector_layout(p).leaves(p, prefix, _scope(p))


def abstract_vlm_params(cfg: VLMConfig) -> dict:
    return model_registry.abstract_params(cfg)


def import_vlm(
    reader: common.CheckpointReader, cfg: VLMConfig, path: str, proj_contains: str, lm_heads=()
) -> dict:
    """The tensors of a Llava-like dir (tower, projector, decoder; key prefixes discovered) ->
    our VLM params. proj_contains: a substring of the projector's keys; lm_heads: LM-head keys
    tried first."""
    keys = reader.keys()
    text_spec, tower = hf_registry.spec_of(cfg.text), hf_registry.spec_of(cfg.vision)
    lm_prefix = find_prefix(keys, text_spec.anchor_suffix, path, contains="language_model")
    heads = (*lm_heads, LM_HEAD, "lm_head.weight")
    lm_head = next((k for k in heads if reader.has(k)), heads[0])
    vis_prefix = find_prefix(keys, tower.anchor_suffix, path)
    anchor = projector_layout(cfg.projector).anchor
    proj_prefix = find_prefix(keys, anchor, path, contains=proj_contains)

    src = TensorSource(reader, path)
    if tower.adapt_source is not None:
        src = tower.adapt_source(src, cfg.vision, vis_prefix)
    shapes = abstract_vlm_params(cfg)
    params = decoder.import_decoder(src, cfg.text, shapes, lm_prefix, (_scope(cfg.text),), lm_head)
    leaves = _vision_leaves(cfg, vis_prefix) + _projector_leaves(cfg, proj_prefix)
    params.update(import_leaves(src, leaves, shapes))
    return params


def load_llava(path: str, **knobs: Any) -> tuple[VLMConfig, dict]:
    """Reads an HF Llava directory (or a layout READERS names) -> (VLMConfig, numpy params)."""
    hf_cfg = common.read_config(path)
    other = next((READERS[a] for a in hf_cfg.get("architectures") or () if a in READERS), None)
    if other is not None:
        return _function(other)(path, **knobs)
    common.check_architecture(hf_cfg, ARCHITECTURES, path)
    cfg = config_from_hf(hf_cfg, path, **knobs)
    reader = common.CheckpointReader(path)
    params = import_vlm(reader, cfg, path, "multi_modal_projector")
    decoder.check_all_used(reader, f"llava ({model_registry.kind_of(cfg.text)} text)")
    return cfg, params


def state_from_params(
    params: Any,
    cfg: VLMConfig,
    prefixes: tuple[str, str, str, str] = (LM_PREFIX, LM_HEAD, VISION_PREFIX, PROJ_PREFIX),
) -> dict[str, np.ndarray]:
    """Our VLM params -> a flat state dict; `prefixes` (decoder, LM head key, tower,
    projector) default to the Llava layout transformers 5 saves."""
    lm, head, vis, proj = prefixes
    p = nn.meta.unbox(params)
    p = p.get("params", p)
    state = decoder.export_decoder(p[_scope(cfg.text)], cfg.text, lm, head)
    tensors = export_leaves(p, _vision_leaves(cfg, vis))
    tower = hf_registry.spec_of(cfg.vision)
    if tower.adapt_export is not None:
        tensors = tower.adapt_export(tensors, vis)
    state.update(tensors)
    state.update(export_leaves(p, _projector_leaves(cfg, proj)))
    return state


def preprocessor_config(cfg: VLMConfig) -> dict[str, Any]:
    """The image processor config matching the tower (used when no processor dir is given)."""
    v = cfg.vision
    return {
        "image_processor_type": hf_registry.spec_of(v).processor_class,
        "do_resize": True,
        "size": {"height": v.image_size, "width": v.image_size},
        "resample": 3,  # bicubic
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(v.image_mean),
        "image_std": list(v.image_std),
        "do_convert_rgb": True,
    }


def save_llava(
    params: Any,
    cfg: VLMConfig,
    path: str,
    tokenizer_dir: str | None = None,
    max_shard_bytes: int | None = None,
    dtype: str | None = None,
) -> list[str]:
    """Writes a dir loadable by LlavaForConditionalGeneration.from_pretrained(path).

    tokenizer_dir: tokenizer / processor / chat-template files found there are copied along;
    without a preprocessor_config.json one matching the tower is written. A projector Llava
    cannot hold goes to its own exporter (PROJECTORS).
    """
    exporter = projector_layout(cfg.projector).exporter
    if exporter is not None:
        kw = dict(tokenizer_dir=tokenizer_dir, max_shard_bytes=max_shard_bytes, dtype=dtype)
        return _function(f"{exporter}:save")(params, cfg, path, **kw)
    state = state_from_params(params, cfg)
    return write_dir(path, config_to_hf(cfg), state, cfg, tokenizer_dir, max_shard_bytes, dtype)


def write_dir(
    path: str,
    hf_cfg: dict[str, Any],
    state: dict,
    cfg: VLMConfig,
    tokenizer_dir: str | None = None,
    max_shard_bytes: int | None = None,
    dtype: str | None = None,
) -> list[str]:
    """config.json + weights (cast to `dtype` when given) + tokenizer files + a preprocessor
    config matching the tower."""
    if dtype is not None:
        from mathjax_vl.models.precision import to_dtype

        state = {k: w.astype(to_dtype(dtype)) for k, w in state.items()}
    hf_cfg["dtype"] = str(next(iter(state.values())).dtype)
    common.write_config(path, hf_cfg)
    files = common.save_safetensors(path, state, max_shard_bytes)
    if tokenizer_dir is not None:
        files += hf_registry.copy_tokenizer_files(tokenizer_dir, path)
    if not os.path.exists(os.path.join(path, "preprocessor_config.json")):
        import json

        with open(os.path.join(path, "preprocessor_config.json"), "w") as f:
            json.dump(preprocessor_config(cfg), f, indent=2)
        files.append("preprocessor_config.json")
    return files


def _save(params: Any, cfg: VLMConfig, path: str, **kw: Any) -> list[str]:
    return save_llava(params, cfg, path, **kw)


hf_registry.register(
    hf_registry.HFArchitecture(
        kind="llava",
        architectures=(*ARCHITECTURES, *READERS),
        model_types=("llava", *OTHER_MODEL_TYPES),
        config_from_hf=config_from_hf,
        config_to_hf=config_to_hf,
        load=load_llava,
        save=_save,
        tokenizer_files=True,
    )
)
