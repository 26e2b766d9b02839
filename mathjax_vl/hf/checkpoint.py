"""Our model checkpoint (written by `mathjax-vl import-hf`), streamed both ways.

Format version 2:
  CKPT/mathjax_vl_model.json   {"format_version": 2, "kind": KIND, "config": {...},
                                "source_dtype": "bfloat16" | null, "source": SRC_DIR | null}
  CKPT/params.safetensors      the unboxed params tree, flat keys "a/b/c", our layout and dtype
  (or params-0000i-of-0000n.safetensors + params.safetensors.index.json)
Safetensors rather than orbax so that a conversion writes it tensor by tensor (no full tree in
memory) and a sharded load reads each device's region straight from the file (hf.streaming).
Version 1 (an orbax directory CKPT/params/) is still read.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from flax import traverse_util

from mathjax_vl.hf import safetensors_io as sio
from mathjax_vl.hf import streaming
from mathjax_vl.hf.common import CheckpointReader, ConversionError

META_FILE = "mathjax_vl_model.json"
PARAMS_STEM = "params"
ORBAX_PARAMS_DIR = "params"  # format version 1
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MAX_SHARD_SIZE = "5GB"


def is_checkpoint(path: str) -> bool:
    return os.path.exists(os.path.join(path, META_FILE))


def _flat(params: Any) -> dict[str, Any]:
    import flax.linen as nn

    params = nn.meta.unbox(params)
    if isinstance(params, dict) and set(params) == {"params"}:
        params = params["params"]
    return traverse_util.flatten_dict(params, sep="/")


def save(
    path: str,
    kind: str,
    config: dict[str, Any],
    params: Any,
    source_dtype: str | None = None,
    source: str | None = None,
    max_shard_size: int | str = MAX_SHARD_SIZE,
) -> list[str]:
    """Writes the checkpoint; lazy leaves are pulled block by block (see module docstring)."""
    path = os.path.abspath(path)
    flat = _flat(params)
    for key, value in flat.items():
        if not hasattr(value, "dtype") or not hasattr(value, "shape"):
            flat[key] = np.asarray(value)
    files = sio.write_sharded(
        path,
        flat,
        sio.parse_size(max_shard_size),
        stem=PARAMS_STEM,
        block_bytes=streaming.options().block_bytes,
    )
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "source_dtype": source_dtype,
        "source": source,
    }
    with open(os.path.join(path, META_FILE), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return [*files, META_FILE]


def read_meta(path: str) -> dict[str, Any]:
    meta_file = os.path.join(os.path.abspath(path), META_FILE)
    if not os.path.exists(meta_file):
        raise ConversionError(f"{path}: not a mathjax-vl checkpoint (no {META_FILE})")
    try:
        with open(meta_file) as f:
            meta = json.load(f)
    except json.JSONDecodeError as e:
        raise ConversionError(f"{meta_file}: invalid JSON: {e}") from e
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise ConversionError(
            f"{meta_file}: format_version {meta.get('format_version')!r}, expected one of "
            f"{list(READABLE_VERSIONS)}"
        )
    return meta


def open_params(path: str) -> dict[str, Any]:
    """The params tree: LazyArrays over the safetensors files (version 2), numpy (version 1)."""
    path = os.path.abspath(path)
    meta = read_meta(path)
    if meta["format_version"] == 1:
        return _restore_orbax(path)
    reader = CheckpointReader(path, stem=PARAMS_STEM)
    flat = {}
    for key in reader.keys():
        shape = reader.shape_of(key)
        dtype = sio.DTYPES[reader.dtype_code(key)]
        layout = streaming.HFLayout("copy", shape, shape)
        flat[key] = streaming.ImportedLeaf(reader, [key], layout, shape, dtype, stacked=False)
        reader.mark_used(key)
    return traverse_util.unflatten_dict(flat, sep="/")


def _restore_orbax(path: str) -> dict[str, Any]:
    import jax
    import orbax.checkpoint as ocp

    params_dir = os.path.join(path, ORBAX_PARAMS_DIR)
    if not os.path.isdir(params_dir):
        raise ConversionError(f"{path}: missing {ORBAX_PARAMS_DIR}/ (the orbax params directory)")
    with ocp.StandardCheckpointer() as ckptr:
        params = ckptr.restore(params_dir)
    return jax.tree.map(np.asarray, params)
