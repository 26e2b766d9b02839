"""Streaming safetensors I/O: validated headers, region reads, and shard-by-shard writing.

Reading parses each file's header once (and checks that every tensor's bytes lie inside the
file, so a truncated shard is named with its first cut tensor before anything is read). A read
maps only the requested tensor's bytes (np.memmap, unmapped right after) and copies out the
requested region, so a strided slice touches only its own pages and the process never keeps
the file resident.

Writing needs only each tensor's shape and dtype up front: the header is written first, then
the bytes of each tensor in order, pulled block by block from the values (numpy arrays or
`streaming.LazyArray`s that read their source on demand). Shards are filled like
`save_pretrained` (a new shard when the next tensor would overflow `max_shard_bytes`) and get
the same names and index. Files are written under a ".partial" name and renamed when complete.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Iterator, Mapping
from typing import Any

import ml_dtypes
import numpy as np

# safetensors dtype code <-> numpy dtype
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U64": np.dtype(np.uint64),
    "U32": np.dtype(np.uint32),
    "U16": np.dtype(np.uint16),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
CODES = {v: k for k, v in DTYPES.items()}
# dtypes a floating-point parameter can be loaded from
FLOAT_CODES = ("F64", "F32", "F16", "BF16")
# transformers' save_pretrained default (transformers 5)
DEFAULT_MAX_SHARD_SIZE = "50GB"
BLOCK_BYTES = 32 << 20  # bytes pulled from a lazy value per write (whole rows, at least one)


class SafetensorsError(ValueError):
    """A safetensors file is unreadable; the message names the file (and tensor)."""


def parse_size(size: int | str | None) -> int | None:
    """'5GB' / '500MB' / '2GiB' / int bytes -> bytes (transformers' convention: GB = 10**9)."""
    if size is None or isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B)?\s*", str(size).upper())
    if not m:
        raise ValueError(f"max shard size {size!r}: expected bytes or e.g. '5GB', '500MB'")
    unit = m.group(2) or "B"
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    scale |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    return int(float(m.group(1)) * scale[unit])


def code_of(dtype: Any) -> str:
    d = np.dtype(dtype)
    if d not in CODES:
        raise SafetensorsError(f"dtype {d} has no safetensors code")
    return CODES[d]


class Header:
    """One safetensors file's parsed header: key -> (dtype code, shape, absolute byte range)."""

    def __init__(self, file: str):
        self.file = file
        try:
            size = os.path.getsize(file)
            with open(file, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise SafetensorsError(f"{file}: truncated ({size} bytes, no header)")
                (n,) = struct.unpack("<Q", head)
                if n > size - 8:
                    raise SafetensorsError(
                        f"{file}: truncated in its header ({size} bytes, header claims {n})"
                    )
                meta = json.loads(f.read(n))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SafetensorsError(f"{file}: unreadable safetensors header: {e}") from e
        self.metadata = meta.pop("__metadata__", None) or {}
        self.start = 8 + n
        self.entries: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
        for key, e in meta.items():
            begin, end = e["data_offsets"]
            code, shape = e["dtype"], tuple(int(s) for s in e["shape"])
            if code not in DTYPES:
                raise SafetensorsError(f"{file}: tensor {key!r}: unknown dtype {code!r}")
            want = int(np.prod(shape, dtype=np.int64)) * DTYPES[code].itemsize
            if end - begin != want:
                raise SafetensorsError(
                    f"{file}: tensor {key!r}: {end - begin} bytes for {code} {list(shape)} "
                    f"(expected {want})"
                )
            self.entries[key] = (code, shape, self.start + begin, self.start + end)
        cut = [k for k, e in self.entries.items() if e[3] > size]
        if cut:
            first = min(cut, key=lambda k: self.entries[k][2])
            raise SafetensorsError(
                f"{file}: truncated: tensor {first!r} needs bytes up to "
                f"{self.entries[first][3]}, the file has {size} ({len(cut)} tensor(s) cut)"
            )

    def keys(self) -> list[str]:
        return list(self.entries)

    def code(self, key: str) -> str:
        return self.entries[key][0]

    def shape(self, key: str) -> tuple[int, ...]:
        return self.entries[key][1]

    def read(self, key: str, index: tuple[slice, ...] | None = None) -> np.ndarray:
        """A copy of tensor `key` (or of its region `index`), read through a transient map."""
        code, shape, begin, end = self.entries[key]
        dtype = DTYPES[code]
        if end == begin:
            return np.zeros(shape, dtype)[index if index is not None else ()]
        if not shape:
            with open(self.file, "rb") as f:
                f.seek(begin)
                return np.frombuffer(f.read(end - begin), dtype).reshape(())
        mm = np.memmap(self.file, dtype=dtype, mode="r", offset=begin, shape=shape)
        try:
            return np.array(mm[index] if index is not None else mm, order="C")
        finally:
            del mm


def _bytes_of(a: np.ndarray) -> memoryview:
    a = np.ascontiguousarray(a).reshape(-1)
    return memoryview(a.view(np.uint8))


def blocks(value: Any, max_bytes: int = BLOCK_BYTES) -> Iterator[np.ndarray]:
    """The C-order contents of `value` in blocks of whole rows (axis 0) of about max_bytes."""
    if hasattr(value, "blocks"):
        yield from value.blocks(max_bytes)
        return
    a = np.asarray(value)
    if a.ndim == 0 or a.nbytes <= max_bytes:
        yield a
        return
    rows = max(1, max_bytes // max(1, a.nbytes // a.shape[0]))
    for r in range(0, a.shape[0], rows):
        yield a[r : r + rows]


def plan_shards(
    specs: list[tuple[str, tuple[int, ...], np.dtype]], max_shard_bytes: int | None
) -> list[list[tuple[str, tuple[int, ...], np.dtype]]]:
    """Groups tensors (in the given order) into shards the way save_pretrained does."""
    shards: list[list] = [[]]
    size = 0
    for spec in specs:
        nbytes = int(np.prod(spec[1], dtype=np.int64)) * spec[2].itemsize
        if max_shard_bytes is not None and shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += nbytes
    return shards


def _write_file(
    file: str,
    specs: list[tuple[str, tuple[int, ...], np.dtype]],
    tensors: Mapping[str, Any],
    metadata: dict[str, str],
    block_bytes: int,
) -> None:
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for key, shape, dtype in specs:
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        header[key] = {
            "dtype": code_of(dtype),
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    partial = file + ".partial"
    try:
        with open(partial, "wb") as f:
            f.write(struct.pack("<Q", len(raw)))
            f.write(raw)
            for key, _shape, dtype in specs:
                written = 0
                for block in blocks(tensors[key], block_bytes):
                    block = np.asarray(block)
                    if block.dtype != dtype:
                        block = block.astype(dtype)
                    written += f.write(_bytes_of(block))
                want = header[key]["data_offsets"][1] - header[key]["data_offsets"][0]
                if written != want:
                    raise SafetensorsError(
                        f"{file}: tensor {key!r}: produced {written} bytes, expected {want}"
                    )
        os.replace(partial, file)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise


def write_sharded(
    path: str,
    tensors: Mapping[str, Any],
    max_shard_bytes: int | None,
    stem: str = "model",
    metadata: dict[str, str] | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> list[str]:
    """Writes `tensors` (key -> array or LazyArray) as STEM.safetensors, or as
    STEM-0000i-of-0000n.safetensors + STEM.safetensors.index.json when over max_shard_bytes.
    Values are pulled block by block, so lazy values never exist whole. Returns file names."""
    os.makedirs(path, exist_ok=True)
    # safetensors' own order (largest alignment first, then name) keeps every tensor aligned
    specs = sorted(
        ((k, tuple(np.shape(v)), np.dtype(v.dtype)) for k, v in tensors.items()),
        key=lambda s: (-s[2].itemsize, s[0]),
    )
    meta = {"format": "pt", **(metadata or {})}
    shards = plan_shards(specs, max_shard_bytes)
    if len(shards) == 1:
        _write_file(
            os.path.join(path, f"{stem}.safetensors"), shards[0], tensors, meta, block_bytes
        )
        return [f"{stem}.safetensors"]
    names, weight_map, total = [], {}, 0
    for i, shard in enumerate(shards):
        name = f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        _write_file(os.path.join(path, name), shard, tensors, meta, block_bytes)
        names.append(name)
        for key, shape, dtype in shard:
            weight_map[key] = name
            total += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(path, f"{stem}.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    return [*names, f"{stem}.safetensors.index.json"]
