"""Reading and writing local Hugging Face model directories, independent of any one architecture.

A reader opens config.json and the weights (model.safetensors, sharded safetensors with
model.safetensors.index.json, or a pytorch_model.bin fallback), hands tensors out one key at a
time with a shape check, and remembers which keys were used so a converter can refuse leftovers
instead of silently dropping them. Every failure is a `ConversionError` naming the file, the key
and the expected vs found shape. Tensors are numpy arrays (bfloat16 via ml_dtypes), never torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from mathjax_vl.hf import safetensors_io as sio
from mathjax_vl.hf import streaming

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"
TORCH_BIN_INDEX = "pytorch_model.bin.index.json"
CONFIG = "config.json"


class ConversionError(ValueError):
    """A checkpoint does not fit the model: the message names file, key and shapes."""


class MissingWeightsError(ConversionError):
    """The directory has no weight file we can read."""


class UnsupportedArchitectureError(ConversionError):
    """config.json names an architecture this converter does not handle."""


def read_config(path: str) -> dict[str, Any]:
    """Parses <path>/config.json."""
    if not os.path.isdir(path):
        raise ConversionError(f"{path}: not a directory")
    file = os.path.join(path, CONFIG)
    if not os.path.exists(file):
        raise ConversionError(f"{file}: missing (expected an HF model directory with config.json)")
    with open(file) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ConversionError(f"{file}: invalid JSON: {e}") from e


def check_architecture(config: dict[str, Any], supported: Sequence[str], path: str) -> str:
    """Returns the config's architecture if it is one of `supported`, else raises."""
    archs = config.get("architectures") or []
    for arch in archs:
        if arch in supported:
            return arch
    raise UnsupportedArchitectureError(
        f"{os.path.join(path, CONFIG)}: unsupported architecture {archs or None} "
        f"(model_type {config.get('model_type')!r}); expected one of {list(supported)}"
    )


def _torch_to_numpy(t: Any) -> np.ndarray:
    import ml_dtypes
    import torch

    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def _torch_code(t: Any) -> str:
    """safetensors dtype code of a torch tensor ("BF16", "F32", ...)."""
    name = str(t.dtype).removeprefix("torch.")
    codes = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16"}
    codes |= {"int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8"}
    return codes.get(name, name.upper())


def dtype_problem(code: str, target: Any) -> str | None:
    """Why a stored tensor of dtype `code` cannot fill a parameter of dtype `target` (or None)."""
    target = np.dtype(target)
    floating = np.issubdtype(target, np.floating) or target.name in ("bfloat16",)
    if floating and code not in sio.FLOAT_CODES:
        return (
            f"dtype {code} cannot be loaded into a {target.name} parameter "
            f"(expected one of {', '.join(sio.FLOAT_CODES)})"
        )
    if not floating and code in sio.FLOAT_CODES:
        return f"dtype {code} cannot be loaded into a {target.name} parameter"
    return None


class CheckpointReader:
    """Lazy, shape- and dtype-checked access to the tensors of an HF directory (or of our own
    safetensors checkpoint: `stem="params"`); tracks used keys.

    Safetensors headers are parsed (and every shard checked complete) up front; tensors are read
    one at a time, whole or by region, through transient maps. A pytorch_model.bin is opened with
    torch.load(mmap=True), so its tensors are paged in one at a time too."""

    def __init__(self, path: str, stem: str = "model"):
        self.path = path
        self._key_file: dict[str, str] = {}
        self._headers: dict[str, sio.Header] = {}
        self._torch_cache: dict[str, dict[str, Any]] = {}
        self._used: set[str] = set()
        st = os.path.join(path, f"{stem}.safetensors")
        st_index = os.path.join(path, f"{stem}.safetensors.index.json")
        pt, pt_index = os.path.join(path, TORCH_BIN), os.path.join(path, TORCH_BIN_INDEX)
        if os.path.exists(st_index):
            self._load_index(st_index)
        elif os.path.exists(st):
            name = os.path.basename(st)
            self._key_file = {k: name for k in self._header(name).keys()}
        elif stem == "model" and os.path.exists(pt_index):
            self._load_index(pt_index)
        elif stem == "model" and os.path.exists(pt):
            self._key_file = {k: TORCH_BIN for k in self._torch_file(TORCH_BIN)}
        else:
            present = sorted(os.listdir(path)) if os.path.isdir(path) else []
            looked = [os.path.basename(st), os.path.basename(st_index)]
            looked += [TORCH_BIN, TORCH_BIN_INDEX] if stem == "model" else []
            raise MissingWeightsError(
                f"{path}: no weights found (looked for {', '.join(looked)}); "
                f"directory holds {present}"
            )

    def _header(self, file: str) -> sio.Header:
        if file not in self._headers:
            try:
                self._headers[file] = sio.Header(os.path.join(self.path, file))
            except sio.SafetensorsError as e:
                raise ConversionError(str(e)) from e
        return self._headers[file]

    def _load_index(self, index_file: str) -> None:
        try:
            with open(index_file) as f:
                weight_map = json.load(f).get("weight_map")
        except (OSError, json.JSONDecodeError) as e:
            raise ConversionError(f"{index_file}: unreadable index: {e}") from e
        if not weight_map:
            raise ConversionError(f"{index_file}: no 'weight_map'")
        by_file: dict[str, list[str]] = {}
        for key, file in weight_map.items():
            by_file.setdefault(file, []).append(key)
        for file, keys in sorted(by_file.items()):
            full = os.path.join(self.path, file)
            if not os.path.exists(full):
                raise MissingWeightsError(
                    f"{full}: missing; {os.path.basename(index_file)} lists it for tensor "
                    f"{sorted(keys)[0]!r}" + (f" and {len(keys) - 1} more" if len(keys) > 1 else "")
                )
            if file.endswith(".safetensors"):
                present = set(self._header(file).keys())
                absent = sorted(set(keys) - present)
                if absent:
                    raise ConversionError(
                        f"{full}: tensor {absent[0]!r} is not in this shard, though "
                        f"{os.path.basename(index_file)} maps it there ({len(absent)} such)"
                    )
        self._key_file = dict(weight_map)

    def _torch_file(self, file: str) -> dict[str, Any]:
        if file not in self._torch_cache:
            import torch

            full = os.path.join(self.path, file)
            try:  # zip-format files map lazily; the legacy format cannot and loads whole
                state = torch.load(full, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:
                state = torch.load(full, map_location="cpu", weights_only=True)
            self._torch_cache[file] = state
        return self._torch_cache[file]

    def keys(self) -> list[str]:
        return sorted(self._key_file)

    def has(self, key: str) -> bool:
        return key in self._key_file

    def file_of(self, key: str) -> str:
        return os.path.join(self.path, self._key_file[key])

    def dtype_code(self, key: str) -> str:
        """The stored dtype as a safetensors code ("BF16", "F32", "I64", ...)."""
        self._require(key)
        file = self._key_file[key]
        if file.endswith(".bin"):
            return _torch_code(self._torch_file(file)[key])
        return self._header(file).code(key)

    def source_dtype(self) -> str | None:
        """The floating dtype holding most of the bytes ("bfloat16", ...), or None."""
        by: dict[str, int] = {}
        for key in self._key_file:
            code = self.dtype_code(key)
            if code in sio.FLOAT_CODES:
                size = int(np.prod(self.shape_of(key), dtype=np.int64))
                by[code] = by.get(code, 0) + size * sio.DTYPES[code].itemsize
        return sio.DTYPES[max(by, key=by.get)].name if by else None

    def read(self, key: str, index: tuple[slice, ...] | None = None) -> np.ndarray:
        """Tensor `key` (or its region `index`), as stored; no key bookkeeping."""
        self._require(key)
        file = self._key_file[key]
        if file.endswith(".bin"):
            t = self._torch_file(file)[key]
            full = int(t.numel())
            out = _torch_to_numpy(t if index is None else t[index])
        else:
            header = self._header(file)
            full = int(np.prod(header.shape(key), dtype=np.int64))
            out = header.read(key, index)
        return streaming.log_read(key, out, full, index)

    def _raw(self, key: str) -> np.ndarray:
        return self.read(key)

    def shape_of(self, key: str) -> tuple[int, ...]:
        self._require(key)
        file = self._key_file[key]
        if file.endswith(".bin"):
            return tuple(self._torch_file(file)[key].shape)
        return self._header(file).shape(key)

    def _require(self, key: str) -> None:
        if key not in self._key_file:
            files = sorted(set(self._key_file.values()))
            raise ConversionError(
                f"{self.path}: missing key {key!r} (searched {files}, {len(self._key_file)} keys)"
            )

    def check(self, key: str, expected_shape: Sequence[int], dtype: Any = None) -> None:
        """Raises unless `key` exists with `expected_shape` (and a dtype that can become
        `dtype`); marks the key used. Reads nothing but the header."""
        self._require(key)
        found = self.shape_of(key)
        if tuple(found) != tuple(expected_shape):
            raise ConversionError(
                f"{self.file_of(key)}: key {key!r}: expected shape {tuple(expected_shape)}, "
                f"found {tuple(found)}"
            )
        if dtype is not None:
            problem = dtype_problem(self.dtype_code(key), dtype)
            if problem:
                raise ConversionError(f"{self.file_of(key)}: tensor {key!r}: {problem}")
        self._used.add(key)

    def take(self, key: str, expected_shape: Sequence[int], dtype: Any = None) -> np.ndarray:
        """The tensor under `key`, checked to have `expected_shape`; marks the key used."""
        self.check(key, expected_shape, dtype)
        return self.read(key)

    def mark_used(self, key: str) -> None:
        self._used.add(key)

    def unused(self) -> list[str]:
        return sorted(set(self._key_file) - self._used)

    def check_all_used(self, ignore_suffixes: Iterable[str] = ()) -> None:
        """Raises if any tensor was not consumed (other than keys ending in ignore_suffixes)."""
        ignore = tuple(ignore_suffixes)
        left = [k for k in self.unused() if not (ignore and k.endswith(ignore))]
        if left:
            shown = ", ".join(left[:10]) + (" ..." if len(left) > 10 else "")
            raise ConversionError(
                f"{self.path}: {len(left)} unexpected key(s) not converted: {shown}"
            )


def write_config(path: str, config: dict[str, Any]) -> None:
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, CONFIG), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


def save_safetensors(
    path: str, tensors: dict[str, Any], max_shard_bytes: int | str | None = None
) -> list[str]:
    """Writes tensors as model.safetensors, or as shards + index when over max_shard_bytes
    (default: the streaming options' size, else transformers' save_pretrained default).

    Values may be numpy arrays or streaming.LazyArrays; they are written one block at a time.
    Returns the written file names.
    """
    opts = streaming.options()
    size = sio.parse_size(max_shard_bytes if max_shard_bytes is not None else opts.max_shard_size)
    return sio.write_sharded(path, tensors, size, stem="model", block_bytes=opts.block_bytes)


def to_numpy(x: Any) -> np.ndarray:
    """jax / numpy array (possibly nn.Partitioned-boxed) -> numpy, dtype preserved."""
    if hasattr(x, "unbox"):
        x = x.unbox()
    return np.asarray(x)
