"""Initialise a stage from Hugging Face weights (or a `mathjax-vl import-hf` checkpoint),
straight into the sharded training state.

`init.hf_dir` may be one directory or a list: each is opened by mathjax_vl.hf.registry and placed
in the task's parameter tree by its kind (a Llava dir fills the whole VLM; a Qwen2 dir fills
`language_model`, a SigLIP/CLIP vision dir fills `vision_tower`, a CLIP dir fills the dual
encoder). Parameters no directory provides keep their fresh initialisation and are listed in the
log.

Nothing is loaded whole: the directories are opened lazily (hf.streaming), and each parameter is
built with `jax.make_array_from_single_device_arrays` from the regions this process's devices
hold, each distinct region read once (replicas share it) straight from the safetensors files
(the HF tensors' bounding boxes, mapped to our layout and cast to the parameter's dtype). So on a
pod no host reads, and no device receives, more than its shards of a sharded parameter.
"""

from __future__ import annotations

import ast
import logging
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import traverse_util

log = logging.getLogger(__name__)

# (task model kind, HF kind) -> prefix of that HF tree inside ours ("" = the whole tree)
PLACEMENT = {
    ("qwen2", "qwen2"): "",
    ("vlm", "llava"): "",
    ("vlm", "qwen2"): "language_model",
    ("vlm", "siglip_vision"): "vision_tower",
    ("vlm", "clip_vision"): "vision_tower",
    ("dual_encoder", "clip"): "clip",
}


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
    provide replaced by its sharded load (shapes and dtypes checked)."""
    dirs = hf_dirs(hf_dir)
    model_kind = config.model.get("kind", "qwen2")
    flat = traverse_util.flatten_dict(fresh, sep="/")
    provided: set[str] = set()
    for path in dirs:
        kind, params = _open(path)
        if (model_kind, kind) not in PLACEMENT:
            raise ValueError(
                f"{path}: a {kind!r} model cannot initialise model.kind={model_kind!r}; "
                f"supported pairs: {sorted(PLACEMENT)}"
            )
        prefix = PLACEMENT[(model_kind, kind)]
        for key, value in traverse_util.flatten_dict(params, sep="/").items():
            ours = f"{prefix}/{key}" if prefix else key
            if ours not in flat:
                raise KeyError(f"{path}: tensor for {ours!r} has no place in the model")
            want = np.shape(flat[ours])
            if tuple(np.shape(value)) != tuple(want):
                raise ValueError(f"{path}: {ours} expected shape {want}, found {np.shape(value)}")
            flat[ours] = place(value, flat[ours], f"{path}: {ours}")
            provided.add(ours)
    fresh_left = sorted(set(flat) - provided)
    if fresh_left:
        log.warning("%d parameters keep their fresh init: %s", len(fresh_left), fresh_left[:10])
    return traverse_util.unflatten_dict(flat, sep="/")
