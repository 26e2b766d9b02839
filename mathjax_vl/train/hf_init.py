"""Initialise a stage from Hugging Face weights (or a `mathjax-vl import-hf` checkpoint),
straight into the sharded training state.

`init.hf_dir` may be one directory or a list: each is opened by mathjax_vl.hf.registry and placed
in the task's parameter tree where the model registry says it sits (`placement`): a directory of
the model's own kind fills the whole tree; inside a VLM a decoder (any registered kind) fills
`language_model` and a tower `vision_tower` (each part's registry `scope`); a CLIP dir fills the
dual encoder's `clip` scope. Several sources of any kind, with their own subtrees and renames,
are train/init_sources.py, which uses `placement` and `place` from here.

Nothing is loaded whole: the directories are opened lazily (hf.streaming), and each parameter is
built with `jax.make_array_from_single_device_arrays` from the regions this process's devices
hold, each distinct region read once (replicas share it) straight from the safetensors files
(the HF tensors' bounding boxes, mapped to our layout and cast to the parameter's dtype). So on a
pod no host reads, and no device receives, more than its shards of a sharded parameter.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
from typing import Any

import jax
import ml_collections
import numpy as np

log = logging.getLogger(__name__)


def _parts(model_cfg: Any) -> dict[str, Any]:
    """A composite's part configs by registry kind (towers and decoders; projectors have no HF
    directory of their own)."""
    from mathjax_vl.models import registry

    out = {}
    for f in dataclasses.fields(model_cfg):
        part = getattr(model_cfg, f.name)
        if dataclasses.is_dataclass(part) and registry.spec_of(part).role != "projector":
            out[registry.kind_of(part)] = part
    return out


def placement(config: ml_collections.ConfigDict, model_cfg: Any, kind: str, path: str) -> str:
    """Prefix of a `kind` tree inside the task's params ("" = the whole tree), from the model
    registry: the model's own kind -> "" (the dual encoder: its "clip" scope), a composite's
    part -> that part's scope. The kind must match the part's configured kind (a Llama dir
    cannot fill a Qwen2 language model); otherwise the error lists the kinds that fit."""
    from mathjax_vl.models import build, registry

    own = registry.kind_of(model_cfg)
    src = registry.get(kind)
    is_dual = build.model_kind(config.model) == build.DUAL_ENCODER_KIND
    parts = _parts(model_cfg) if registry.spec_of(model_cfg).role == "composite" else {}
    if src.kind == own:
        return build.DUAL_ENCODER_SCOPE if is_dual else ""
    if src.kind in parts and src.scope is not None:
        return src.scope
    raise ValueError(
        f"{path}: a {kind!r} model cannot initialise model.kind={config.model.get('kind')!r} "
        f"({own!r}); kinds that fit: {sorted({own, *parts})}"
    )


def place(value: Any, like: Any, name: str = "") -> jax.Array:
    """`value` (LazyArray, numpy or jax) as a jax array with `like`'s shape, dtype and sharding,
    reading only the regions of this process's devices, each distinct region once."""
    from mathjax_vl.hf import streaming
    from mathjax_vl.hf.common import ConversionError, dtype_problem
    from mathjax_vl.hf.safetensors_io import CODES

    lazy = streaming.as_lazy(value)
    dtype = np.dtype(like.dtype)
    problem = dtype_problem(CODES.get(lazy.dtype, str(lazy.dtype)), dtype)
    if problem:
        raise ConversionError(f"{name}: {problem}")
    sharding = getattr(like, "sharding", None)
    if sharding is None:
        return jax.numpy.asarray(lazy.read().astype(dtype))
    shape = tuple(like.shape)
    regions: dict[tuple, list] = {}
    for device, index in sharding.addressable_devices_indices_map(shape).items():
        ranges = streaming.normalize(index, shape)
        regions.setdefault(tuple((r.start, r.stop) for r in ranges), []).append(device)
    shards = []
    for region, devices in regions.items():
        host = lazy.read(tuple(slice(a, b) for a, b in region)).astype(dtype, copy=False)
        shards += [jax.device_put(host, d) for d in devices]
        del host
    return jax.make_array_from_single_device_arrays(shape, sharding, shards)


def _open(path: str) -> tuple[str, dict]:
    from mathjax_vl.hf import registry

    kind, _, params, _ = registry.open_any(path)
    return kind, params


def hf_dirs(value: Any) -> list[str]:
    """`init.hf_dir` as a list of directories. The config field is a string (ml_collections
    types it by its default), so several directories are written comma-separated
    (`--config.init.hf_dir=/m/qwen2,/m/siglip`) or as a list literal (`"['/m/a', '/m/b']"`, what
    a list override becomes); a list or tuple is taken as is."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith("["):
        parsed = ast.literal_eval(text)
        if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
            raise ValueError(f"init.hf_dir {text!r}: expected a list of directory strings")
        return parsed
    return [part.strip() for part in text.split(",") if part.strip()]


def load_params(config: ml_collections.ConfigDict, hf_dir: Any, fresh: Any) -> Any:
    """Fresh params (jax arrays, sharded as training wants) with every tensor the directories
    provide replaced by its sharded load (shapes and dtypes checked); the directories must fill
    every parameter outside `config.init.allow_missing` (train.init_sources)."""
    from mathjax_vl.train import init_sources

    sources = [init_sources.Source(path=d) for d in hf_dirs(hf_dir)]
    allow = list((config.get("init") or {}).get("allow_missing") or [])
    return init_sources.fill(config, fresh, sources, allow)[0]
