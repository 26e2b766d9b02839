"""HF `LlavaForConditionalGeneration` (any registered tower + any registered decoder) <-> our VLM.

The parts are registry lookups: `vision_config.model_type` and `text_config.model_type` name the
tower's and the decoder's HF mapping (mathjax_vl.hf.registry), whose weight tables are placed
under the VLM scopes the model registry declares.

Import discovers the key prefixes from the files, so the layouts transformers has written all
load: "language_model.model.*" / "vision_tower.*" (what transformers 5 saves),
"model.language_model.*" / "model.vision_tower.vision_model.*" / "lm_head.weight" (4.5x), and
"vision_tower.vision_model.*".
Export writes the layout the installed transformers saves, so HF -> ours -> HF is bit-identical
for directories it wrote. The Math-PUMA SwiGLU projector has no Llava equivalent and is refused.
"""

from __future__ import annotations

import os
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
# projector kinds LlavaMultiModalProjector can express
PROJECTOR_KINDS = ("mlp",)
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
        projector = ProjectorConfig(
            kind="mlp",
            input_dim=vision.hidden_size * len(layers),
            output_dim=text.hidden_size,
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
    """VLMConfig -> LlavaConfig dict. Raises for projectors Llava cannot express."""
    check_exportable(cfg)
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
    p = cfg.projector
    if p.kind not in PROJECTOR_KINDS:
        raise ConversionError(
            f"cannot export projector kind {p.kind!r} (Math-PUMA's bias-free SwiGLU aligner "
            "down(act(gate(x)) * up(x))) as LlavaForConditionalGeneration: Llava's projector is "
            "linear_2(act(linear_1(x))) and has no equivalent; save a mathjax-vl checkpoint instead"
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
    return linear_leaves(
        f"{prefix}linear_1",
        (_scope(p), "linear_1"),
        p.output_dim,
        p.input_dim,
        p.use_bias,
    ) + linear_leaves(
        f"{prefix}linear_2",
        (_scope(p), "linear_2"),
        p.output_dim,
        p.output_dim,
        p.use_bias,
    )


def abstract_vlm_params(cfg: VLMConfig) -> dict:
    return model_registry.abstract_params(cfg)


def load_llava(path: str, **knobs: Any) -> tuple[VLMConfig, dict]:
    """Reads an HF Llava directory -> (VLMConfig, unboxed numpy params)."""
    hf_cfg = common.read_config(path)
    common.check_architecture(hf_cfg, ARCHITECTURES, path)
    cfg = config_from_hf(hf_cfg, path, **knobs)
    reader = common.CheckpointReader(path)
    keys = reader.keys()
    text_spec, tower = hf_registry.spec_of(cfg.text), hf_registry.spec_of(cfg.vision)
    lm_prefix = find_prefix(keys, text_spec.anchor_suffix, path)
    lm_head = next((k for k in (LM_HEAD, "lm_head.weight") if reader.has(k)), LM_HEAD)
    vis_prefix = find_prefix(keys, tower.anchor_suffix, path)
    proj_prefix = find_prefix(keys, "linear_1.weight", path, contains="multi_modal_projector")

    src = TensorSource(reader, path)
    if tower.adapt_source is not None:
        src = tower.adapt_source(src, cfg.vision, vis_prefix)
    shapes = abstract_vlm_params(cfg)
    params = decoder.import_decoder(src, cfg.text, shapes, lm_prefix, (_scope(cfg.text),), lm_head)
    leaves = _vision_leaves(cfg, vis_prefix) + _projector_leaves(cfg, proj_prefix)
    params.update(import_leaves(src, leaves, shapes))
    decoder.check_all_used(reader, f"llava ({model_registry.kind_of(cfg.text)} text)")
    return cfg, params


def state_from_params(params: Any, cfg: VLMConfig) -> dict[str, np.ndarray]:
    """Our VLM params -> the flat Llava state dict (transformers 5 key layout)."""
    check_exportable(cfg)
    p = nn.meta.unbox(params)
    p = p.get("params", p)
    state = decoder.export_decoder(p[_scope(cfg.text)], cfg.text, LM_PREFIX, LM_HEAD)
    tensors = export_leaves(p, _vision_leaves(cfg, VISION_PREFIX))
    tower = hf_registry.spec_of(cfg.vision)
    if tower.adapt_export is not None:
        tensors = tower.adapt_export(tensors, VISION_PREFIX)
    state.update(tensors)
    state.update(export_leaves(p, _projector_leaves(cfg, PROJ_PREFIX)))
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
    without a preprocessor_config.json one matching the tower is written.
    """
    hf_cfg = config_to_hf(cfg)
    state = state_from_params(params, cfg)
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
        architectures=ARCHITECTURES,
        model_types=("llava",),
        config_from_hf=config_from_hf,
        config_to_hf=config_to_hf,
        load=load_llava,
        save=_save,
        tokenizer_files=True,
    )
)
