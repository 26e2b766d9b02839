"""The HF side of the model registry: one entry point for model directories, HF and ours.

Each architecture module of this package (hf/qwen2.py, hf/llava.py, hf/siglip.py, ...) registers
an `HFArchitecture` for a mathjax_vl.models.registry kind: the HF `architectures` and
`model_type`s it reads (the first of each is what it writes), its config mapping both ways, and
how a directory of it loads and saves. detect_kind / load_hf / save_hf / the Llava composite's
text and vision parts are lookups here; an unregistered architecture is an error listing the
registered ones.

Our checkpoint format (written by `mathjax-vl import-hf`, read by export-hf / generate) is
described in mathjax_vl.hf.checkpoint: meta JSON + the unboxed params tree as safetensors (the
tree `apply({"params": ...})` takes; dtypes are kept).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
from collections.abc import Callable
from typing import Any

from mathjax_vl.hf import checkpoint, common
from mathjax_vl.hf.common import ConversionError, UnsupportedArchitectureError
from mathjax_vl.models import registry as model_registry

META_FILE = checkpoint.META_FILE
FORMAT_VERSION = checkpoint.FORMAT_VERSION

# Files copied next to exported weights when a tokenizer / processor dir is given.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "processor_config.json",
    "generation_config.json",
)

BUILTIN_MODULES = (
    "mathjax_vl.hf.qwen2",
    "mathjax_vl.hf.qwen3",
    "mathjax_vl.hf.llama",
    "mathjax_vl.hf.mistral",
    "mathjax_vl.hf.siglip",
    "mathjax_vl.hf.clip",
    "mathjax_vl.hf.sam",
    "mathjax_vl.hf.llava",
    "mathjax_vl.hf.internvl",
    "mathjax_vl.hf.deepseek_vl",
)


@dataclasses.dataclass(frozen=True)
class HFArchitecture:
    """How one registered model kind reads and writes Hugging Face directories.

    config_from_hf(hf_dict, where, **knobs) -> config (errors name `where` and the field);
    config_to_hf(config) -> config.json dict; load(path, **knobs) -> (config, numpy params);
    save(params, config, path, **kw) -> files written (kw: max_shard_bytes, dtype).
    """

    kind: str  # the models.registry kind
    architectures: tuple[str, ...]
    model_types: tuple[str, ...]
    config_from_hf: Callable[..., Any]
    config_to_hf: Callable[[Any], dict[str, Any]]
    load: Callable[..., tuple[Any, Any]]
    save: Callable[..., list[str]]
    tokenizer_files: bool = False  # a tokenizer dir given on export is copied along
    # As a part of a composite (Llava): weight table leaves(cfg, hf_prefix, path) -> [Leaf], the
    # tensor suffix that locates the part's key prefix in a file, optional hooks turning stored
    # tensors into the table's (adapt_source(src, cfg, prefix) -> src) and back
    # (adapt_export(tensors, prefix) -> tensors), and a tower's HF image processor class.
    leaves: Callable[..., list] | None = None
    anchor_suffix: str | None = None
    adapt_source: Callable[..., Any] | None = None
    adapt_export: Callable[..., Any] | None = None
    processor_class: str | None = None

    @property
    def role(self) -> str:
        return model_registry.get(self.kind).role


_BY_KIND: dict[str, HFArchitecture] = {}
_loaded = False


def register(spec: HFArchitecture) -> HFArchitecture:
    model_registry.get(spec.kind)  # the model side must exist
    if spec.kind in _BY_KIND:
        raise ValueError(f"HF mapping for kind {spec.kind!r} is already registered")
    taken = {a for s in _BY_KIND.values() for a in s.architectures}
    clash = sorted(taken & set(spec.architectures))
    if clash:
        raise ValueError(f"HF architectures {clash} are already registered")
    _BY_KIND[spec.kind] = spec
    return spec


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for name in BUILTIN_MODULES:
            importlib.import_module(name)


def kinds(role: str | None = None) -> tuple[str, ...]:
    """Kinds with an HF mapping (of one models.registry role), sorted."""
    _ensure_loaded()
    return tuple(sorted(k for k, s in _BY_KIND.items() if role is None or s.role == role))


def architectures(role: str | None = None) -> list[str]:
    _ensure_loaded()
    return sorted(
        a for s in _BY_KIND.values() if role is None or s.role == role for a in s.architectures
    )


def get(kind: str) -> HFArchitecture:
    """The HF mapping of a registered kind (or alias, e.g. "vlm" -> "llava")."""
    _ensure_loaded()
    name = model_registry.get(kind).kind
    if name not in _BY_KIND:
        raise ConversionError(
            f"model kind {kind!r} has no Hugging Face mapping; kinds with one: {list(kinds())}"
        )
    return _BY_KIND[name]


def spec_of(cfg: Any) -> HFArchitecture:
    return get(model_registry.kind_of(cfg))


def by_model_type(model_type: Any, role: str, where: str) -> HFArchitecture:
    """The mapping whose HF model_type is `model_type` among `role` (a composite's sub-config)."""
    _ensure_loaded()
    for spec in _BY_KIND.values():
        if spec.role == role and model_type in spec.model_types:
            return spec
    known = sorted(t for s in _BY_KIND.values() if s.role == role for t in s.model_types)
    raise UnsupportedArchitectureError(
        f"{where}.model_type {model_type!r} unsupported; registered {role} model_types: {known}"
    )


def detect_kind(path: str) -> str:
    """The kind of an HF directory from its config.json; unsupported -> clear error."""
    _ensure_loaded()
    cfg = common.read_config(path)
    archs = cfg.get("architectures") or []
    for arch in archs:
        for spec in _BY_KIND.values():
            if arch in spec.architectures:
                return spec.kind
    if not archs:
        for spec in _BY_KIND.values():
            if cfg.get("model_type") in spec.model_types:
                return spec.kind
    raise UnsupportedArchitectureError(
        f"{os.path.join(path, common.CONFIG)}: unsupported architecture {archs or None} "
        f"(model_type {cfg.get('model_type')!r}); supported: {architectures()}"
    )


def load_hf(path: str, **knobs: Any) -> tuple[str, Any, dict]:
    """HF dir -> (kind, config dataclass, unboxed numpy params)."""
    cfg, params = _BY_KIND[detect_kind(path)].load(path, **knobs)
    return model_registry.kind_of(cfg), cfg, params  # one entry may read several kinds


def copy_tokenizer_files(tokenizer_dir: str, path: str) -> list[str]:
    """Copies the tokenizer / processor files found in tokenizer_dir to path; returns names."""
    if not os.path.isdir(tokenizer_dir):
        raise ConversionError(f"tokenizer dir {tokenizer_dir}: not a directory")
    files = []
    for name in TOKENIZER_FILES:
        if os.path.exists(os.path.join(tokenizer_dir, name)):
            shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(path, name))
            files.append(name)
    return files


def save_hf(
    kind: str, cfg: Any, params: Any, path: str, tokenizer_dir: str | None = None, **kw: Any
) -> list[str]:
    """Writes an HF dir for `kind`; tokenizer/processor files are copied from tokenizer_dir for
    the kinds that generate text (decoders and the VLM)."""
    spec = get(kind)
    if spec.tokenizer_files:
        return spec.save(params, cfg, path, tokenizer_dir=tokenizer_dir, **kw)
    return spec.save(params, cfg, path, **kw)


# ---- config (de)serialisation for our checkpoints -------------------------------------------


def config_to_dict(kind: str, cfg: Any) -> dict[str, Any]:
    return model_registry.config_to_dict(cfg)


def config_from_dict(kind: str, d: dict[str, Any]) -> Any:
    try:
        return model_registry.config_from_dict(kind, d)
    except model_registry.UnknownKindError as e:
        raise ConversionError(str(e)) from e


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
