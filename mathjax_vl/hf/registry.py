"""One entry point for model directories: HF dirs (dispatched by config.json) and our checkpoints.

Kinds: "qwen2" (Qwen2ForCausalLM), "llava" (LlavaForConditionalGeneration, SigLIP/CLIP + Qwen2),
"siglip_vision" (SiglipVisionModel), "siglip" (SiglipModel), "clip" (CLIPModel),
"clip_vision" (CLIPVisionModel).

Our checkpoint format (written by `mathjax-vl import-hf`, read by export-hf / generate) is
described in mathjax_vl.hf.checkpoint: meta JSON + the unboxed params tree as safetensors (the
tree `apply({"params": ...})` takes; dtypes are kept).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from mathjax_vl.hf import checkpoint, common
from mathjax_vl.hf.common import ConversionError, UnsupportedArchitectureError

META_FILE = checkpoint.META_FILE
FORMAT_VERSION = checkpoint.FORMAT_VERSION

# HF architectures (and model_type as a fallback when `architectures` is absent) -> kind
ARCHITECTURE_KINDS = {
    "Qwen2ForCausalLM": "qwen2",
    "LlavaForConditionalGeneration": "llava",
    "SiglipVisionModel": "siglip_vision",
    "SiglipModel": "siglip",
    "CLIPModel": "clip",
    "CLIPVisionModel": "clip_vision",
}
MODEL_TYPE_KINDS = {
    "qwen2": "qwen2",
    "llava": "llava",
    "siglip_vision_model": "siglip_vision",
    "siglip": "siglip",
    "clip": "clip",
    "clip_vision_model": "clip_vision",
}
KINDS = tuple(sorted(set(ARCHITECTURE_KINDS.values())))


def detect_kind(path: str) -> str:
    """The kind of an HF directory from its config.json; unsupported -> clear error."""
    cfg = common.read_config(path)
    archs = cfg.get("architectures") or []
    for arch in archs:
        if arch in ARCHITECTURE_KINDS:
            return ARCHITECTURE_KINDS[arch]
    if not archs and cfg.get("model_type") in MODEL_TYPE_KINDS:
        return MODEL_TYPE_KINDS[cfg["model_type"]]
    raise UnsupportedArchitectureError(
        f"{os.path.join(path, common.CONFIG)}: unsupported architecture {archs or None} "
        f"(model_type {cfg.get('model_type')!r}); supported: {sorted(ARCHITECTURE_KINDS)}"
    )


def load_hf(path: str, **knobs: Any) -> tuple[str, Any, dict]:
    """HF dir -> (kind, config dataclass, unboxed numpy params)."""
    kind = detect_kind(path)
    if kind == "qwen2":
        from mathjax_vl.hf.qwen2 import load_qwen2

        cfg, params = load_qwen2(path, **knobs)
    elif kind == "llava":
        from mathjax_vl.hf.llava import load_llava

        cfg, params = load_llava(path, **knobs)
    elif kind == "siglip_vision":
        from mathjax_vl.hf.siglip import load_siglip_vision

        cfg, params, _ = load_siglip_vision(path, **knobs)
    elif kind == "siglip":
        from mathjax_vl.hf.siglip import load_siglip

        cfg, params = load_siglip(path, **knobs)
    else:
        from mathjax_vl.hf.clip import load_clip

        cfg, params = load_clip(path, **knobs)
    return kind, cfg, params


def save_hf(kind: str, cfg: Any, params: Any, path: str, tokenizer_dir: str | None = None):
    """Writes an HF dir for `kind` (llava: tokenizer/processor files copied from tokenizer_dir)."""
    if kind == "llava":
        from mathjax_vl.hf.llava import save_llava

        return save_llava(params, cfg, path, tokenizer_dir=tokenizer_dir)
    if kind == "qwen2":
        from mathjax_vl.hf.llava import TOKENIZER_FILES
        from mathjax_vl.hf.qwen2 import save_qwen2

        files = save_qwen2(params, cfg, path)
        if tokenizer_dir is not None:
            import shutil

            for name in TOKENIZER_FILES:
                if os.path.exists(os.path.join(tokenizer_dir, name)):
                    shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(path, name))
                    files.append(name)
        return files
    if kind == "siglip_vision":
        from mathjax_vl.hf.siglip import save_siglip_vision

        return save_siglip_vision(params, cfg, path)
    if kind == "siglip":
        from mathjax_vl.hf.siglip import save_siglip

        return save_siglip(params, cfg, path)
    if kind == "clip":
        from mathjax_vl.hf.clip import save_clip

        return save_clip(params, cfg, path)
    if kind == "clip_vision":
        from mathjax_vl.hf.clip import save_clip_vision

        return save_clip_vision(params, cfg, path)
    raise ConversionError(f"cannot export kind {kind!r}; supported: {KINDS}")


# ---- config (de)serialisation for our checkpoints -------------------------------------------


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if k in ("image_mean", "image_std") else v for k, v in d.items()}


def config_to_dict(kind: str, cfg: Any) -> dict[str, Any]:
    if kind == "llava":
        return cfg.to_dict()
    return dataclasses.asdict(cfg)


def config_from_dict(kind: str, d: dict[str, Any]) -> Any:
    if kind == "llava":
        from mathjax_vl.models.vlm import VLMConfig

        return VLMConfig.from_dict(d)
    if kind == "qwen2":
        from mathjax_vl.models.qwen2 import Qwen2Config

        return Qwen2Config(**d)
    if kind == "siglip_vision":
        from mathjax_vl.models.siglip import SiglipVisionConfig

        return SiglipVisionConfig(**_tuples(d))
    if kind == "siglip":
        from mathjax_vl.models.siglip import SiglipConfig, SiglipTextConfig, SiglipVisionConfig

        return SiglipConfig(
            vision=SiglipVisionConfig(**_tuples(d["vision"])), text=SiglipTextConfig(**d["text"])
        )
    from mathjax_vl.models.clip import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

    if kind == "clip_vision":
        return CLIPVisionConfig(**_tuples(d))
    if kind == "clip":
        d = dict(d)
        return CLIPConfig(
            vision=CLIPVisionConfig(**_tuples(d.pop("vision"))),
            text=CLIPTextConfig(**d.pop("text")),
            **d,
        )
    raise ConversionError(f"unknown model kind {kind!r}; expected one of {KINDS}")


def is_checkpoint(path: str) -> bool:
    return checkpoint.is_checkpoint(path)


def save_checkpoint(
    path: str,
    kind: str,
    cfg: Any,
    params: Any,
    source_dtype: str | None = None,
    source: str | None = None,
) -> list[str]:
    """Writes our checkpoint (hf.checkpoint; lazy params stream). `path` must hold no params."""
    return checkpoint.save(path, kind, config_to_dict(kind, cfg), params, source_dtype, source)


def open_checkpoint(path: str) -> tuple[str, Any, dict, dict]:
    """Our checkpoint -> (kind, config, params as LazyArrays where the format allows, meta)."""
    meta = checkpoint.read_meta(path)
    kind = meta.get("kind")
    cfg = config_from_dict(kind, meta["config"])
    return kind, cfg, checkpoint.open_params(path), meta


def load_checkpoint(path: str) -> tuple[str, Any, dict]:
    """Reads our checkpoint -> (kind, config, params as numpy arrays)."""
    from mathjax_vl.hf import streaming

    kind, cfg, params, _ = open_checkpoint(path)
    return kind, cfg, streaming.materialize(params)


def open_any(path: str, **knobs: Any) -> tuple[str, Any, dict, dict]:
    """Our checkpoint or an HF dir -> (kind, config, lazy params, meta with "source_dtype")."""
    from mathjax_vl.hf import streaming

    if is_checkpoint(path):
        return open_checkpoint(path)
    with streaming.lazy():
        kind, cfg, params = load_hf(path, **knobs)
    return kind, cfg, params, {"source_dtype": common.CheckpointReader(path).source_dtype()}


def load_any(path: str, **knobs: Any) -> tuple[str, Any, dict]:
    """Our checkpoint or an HF dir -> (kind, config, params)."""
    if is_checkpoint(path):
        return load_checkpoint(path)
    return load_hf(path, **knobs)
