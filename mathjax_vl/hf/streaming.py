"""Lazy tensors, so conversions stream instead of building whole state dicts.

Inside `lazy()`, the table-driven converters (leaves.import_leaves / export_leaves) check every
shape, dtype and key as usual but return `LazyArray`s instead of numpy arrays: an imported leaf
remembers which HF tensors it comes from and how their layout maps onto ours, an exported tensor
which of our leaves (and which layer of it) it is. Nothing is read until a consumer asks:
  - `safetensors_io.write_sharded` pulls each value block by block (import -> our checkpoint,
    export -> HF shards), so the working set is a block, not a model;
  - `train.hf_init` reads each device's region (`read(index)`), so no host holds a full tensor
    of a sharded parameter.
Outside `lazy()` the converters behave exactly as before (numpy in, numpy out).

`ReadLog` records every read (key, region size, full size) and the number of live arrays handed
out, which the tests use to show that the streamed paths hold memory.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from mathjax_vl.hf.safetensors_io import BLOCK_BYTES, DEFAULT_MAX_SHARD_SIZE


@dataclasses.dataclass(frozen=True)
class Options:
    """Knobs of the writers that per-architecture save functions do not pass through."""

    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE
    block_bytes: int = BLOCK_BYTES  # the writers' working set per tensor (whole rows)


_LAZY: contextvars.ContextVar[bool] = contextvars.ContextVar("mathjax_vl_hf_lazy", default=False)
_OPTIONS: contextvars.ContextVar[Options | None] = contextvars.ContextVar(
    "mathjax_vl_hf_options", default=None
)


def options() -> Options:
    return _OPTIONS.get() or Options()


@contextlib.contextmanager
def lazy(max_shard_size: int | str | None = None, block_bytes: int | None = None):
    """Converters called inside return LazyArrays (see module docstring); writers called inside
    shard at `max_shard_size` (default: transformers' save_pretrained default) and pull
    `block_bytes` at a time."""
    token = _LAZY.set(True)
    opts = _OPTIONS.set(
        Options(max_shard_size or DEFAULT_MAX_SHARD_SIZE, block_bytes or BLOCK_BYTES)
    )
    try:
        yield
    finally:
        _OPTIONS.reset(opts)
        _LAZY.reset(token)


def is_lazy() -> bool:
    return _LAZY.get()


Index = tuple[slice, ...]


def normalize(index: Index | None, shape: tuple[int, ...]) -> tuple[range, ...]:
    """A region (tuple of unit-step slices, possibly shorter than shape) -> one range per axis."""
    index = tuple(index or ())
    index = index + (slice(None),) * (len(shape) - len(index))
    out = []
    for s, n in zip(index, shape):
        start, stop, step = s.indices(n)
        if step != 1:
            raise ValueError(f"strided region {s} unsupported")
        out.append(range(start, stop))
    return tuple(out)


def _slices(ranges: tuple[range, ...]) -> Index:
    return tuple(slice(r.start, r.stop) for r in ranges)


class ReadLog:
    """Counts reads and live arrays (for tests and benchmarks): install with `ReadLog.active`."""

    active: ReadLog | None = None

    def __init__(self):
        # (key, region as ((start, stop), ...) or None for whole, elements read, elements in it)
        self.reads: list[tuple[str, Any, int, int]] = []
        self.live = 0
        self.peak_live = 0

    def record(self, key: str, array: np.ndarray, full_size: int, index: Any = None) -> np.ndarray:
        region = None if index is None else tuple((s.start, s.stop) for s in index)
        self.reads.append((key, region, int(array.size), int(full_size)))
        self.live += 1
        self.peak_live = max(self.peak_live, self.live)
        weakref.finalize(array, self._release)
        return array

    def _release(self) -> None:
        self.live -= 1

    def __enter__(self) -> ReadLog:
        self._prev, ReadLog.active = ReadLog.active, self
        return self

    def __exit__(self, *exc) -> None:
        ReadLog.active = self._prev


def log_read(key: str, array: np.ndarray, full_size: int, index: Any = None) -> np.ndarray:
    log = ReadLog.active
    return log.record(key, array, full_size, index) if log is not None else array


class LazyArray:
    """An array known by shape and dtype, read (whole or by region) on demand."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def read(self, index: Index | None = None) -> np.ndarray:  # region in C order, self.dtype
        raise NotImplementedError

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def astype(self, dtype: Any, copy: bool = True) -> LazyArray:
        dtype = np.dtype(dtype)
        return self if dtype == self.dtype else Cast(self, dtype)

    def __getitem__(self, i: int) -> LazyArray:
        if not isinstance(i, (int, np.integer)):
            return self.read(i if isinstance(i, tuple) else (i,))
        return Row(self, int(i))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.read()
        return a if dtype is None else a.astype(dtype)

    def blocks(self, max_bytes: int) -> Iterator[np.ndarray]:
        """Whole rows along axis 0, about max_bytes at a time (C order overall)."""
        if self.ndim == 0 or self.nbytes <= max_bytes:
            yield self.read()
            return
        rows = max(1, max_bytes // max(1, self.nbytes // self.shape[0]))
        for r in range(0, self.shape[0], rows):
            yield self.read((slice(r, min(r + rows, self.shape[0])),))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype})"


class Cast(LazyArray):
    def __init__(self, base: LazyArray, dtype: np.dtype):
        self.base, self.shape, self.dtype = base, base.shape, np.dtype(dtype)

    def read(self, index: Index | None = None) -> np.ndarray:
        return self.base.read(index).astype(self.dtype)


class Row(LazyArray):
    """base[i] of a lazy array (one layer of a stacked leaf)."""

    def __init__(self, base: LazyArray, i: int):
        if not 0 <= i < base.shape[0]:
            raise IndexError(f"row {i} of a {base.shape[0]}-row array")
        self.base, self.i, self.shape, self.dtype = base, i, base.shape[1:], base.dtype

    def read(self, index: Index | None = None) -> np.ndarray:
        return self.base.read((slice(self.i, self.i + 1), *(index or ())))[0]


class Stored(LazyArray):
    """A tensor kept in memory (numpy / jax); a region read is a slice."""

    def __init__(self, value: Any):
        self.value = value
        self.shape, self.dtype = tuple(np.shape(value)), np.dtype(value.dtype)

    def read(self, index: Index | None = None) -> np.ndarray:
        a = np.asarray(self.value)
        return a if index is None else np.asarray(a[_slices(normalize(index, self.shape))])


def as_lazy(value: Any) -> LazyArray:
    return value if isinstance(value, LazyArray) else Stored(value)


def export_dtype(
    requested: str | None, params: Any, source_dtype: str | None, what: str
) -> str | None:
    """The dtype an export writes: `requested`, else the source dtype recorded at import when
    the params differ from it (e.g. a trained float32 master of a bfloat16 model; a one-line
    notice goes to stderr), else None (keep the params' dtype)."""
    import sys

    import jax

    if requested is not None:
        return requested
    if not source_dtype:
        return None
    dtypes = {np.dtype(x.dtype).name for x in jax.tree.leaves(params)}
    if dtypes == {source_dtype}:
        return None
    print(
        f"export-hf: {what} holds {'/'.join(sorted(dtypes))} parameters; writing the source "
        f"dtype {source_dtype} (pass --dtype to choose another)",
        file=sys.stderr,
    )
    return source_dtype


def cast_lazily(params: Any, dtype: str | None) -> Any:
    """The params tree with every leaf a LazyArray cast to `dtype` when read (no copy now)."""
    import jax

    from mathjax_vl.models.precision import to_dtype

    if dtype is None:
        return params
    target = np.dtype(to_dtype(dtype))
    return jax.tree.map(lambda w: as_lazy(w).astype(target), params)


def materialize(tree: Any) -> Any:
    """A nested dict with LazyArrays read into numpy arrays."""
    if isinstance(tree, dict):
        return {k: materialize(v) for k, v in tree.items()}
    return tree.read() if isinstance(tree, LazyArray) else tree


# ---- layout maps: a region of our tensor <-> the part of the HF tensor it comes from ----------


def _block_split(shape: tuple[int, ...], rows: int) -> int | None:
    """k such that prod(shape[:k]) == rows (our dims grouped into HF's two axes), else None."""
    p = 1
    for k, n in enumerate(shape):
        if p == rows:
            return k
        p *= n
    return len(shape) if p == rows else None


def _flat(ranges: tuple[range, ...], dims: tuple[int, ...]) -> np.ndarray:
    """C-order flat indices of the product of `ranges` within `dims` (a 1-d int array)."""
    if not ranges:
        return np.zeros(1, np.int64)
    grids = np.ix_(*[np.arange(r.start, r.stop) for r in ranges])
    return np.ravel_multi_index(grids, dims).reshape(-1)


@dataclasses.dataclass
class HFLayout:
    """How our per-layer tensor of shape `ours` is made from an HF tensor (leaves.KINDS)."""

    kind: str
    hf_shape: tuple[int, ...]
    ours: tuple[int, ...]

    def read(self, read_hf, ranges: tuple[range, ...]) -> np.ndarray:
        """Our region `ranges`, reading only its bounding box of the HF tensor via
        read_hf(index) -> np.ndarray."""
        region = tuple(len(r) for r in ranges)
        if self.kind == "linear":
            _, inp = self.hf_shape  # ours = reshape(w.T [in, out])
            k = _block_split(self.ours, inp)
            if k is None:
                return self._full(read_hf)[_slices(ranges)]
            rows = _flat(ranges[:k], self.ours[:k])  # indices into `in`
            cols = _flat(ranges[k:], self.ours[k:])  # indices into `out`
            r0, c0 = int(rows.min()), int(cols.min())
            sub = read_hf((slice(c0, int(cols.max()) + 1), slice(r0, int(rows.max()) + 1)))
            if sub.shape != (len(cols), len(rows)):  # region not a box in HF's layout
                sub = sub[np.ix_(cols - c0, rows - r0)]
            return np.ascontiguousarray(sub.T).reshape(region)
        if self.kind == "conv":
            _, c, p, q = self.hf_shape  # ours [p*q*c, d] rows ordered (ph, pw, c)
            rr, dr = ranges
            sub = read_hf((slice(dr.start, dr.stop),))
            mine = sub.transpose(2, 3, 1, 0).reshape(p * q * c, len(dr))
            return np.ascontiguousarray(mine[rr.start : rr.stop])
        if tuple(self.hf_shape) == tuple(self.ours):
            return read_hf(_slices(ranges))
        if len(self.hf_shape) == 1:  # a flat HF vector reshaped to ours
            flat = _flat(ranges, self.ours)
            lo = int(flat.min())
            return read_hf((slice(lo, int(flat.max()) + 1),))[flat - lo].reshape(region)
        return self._full(read_hf).reshape(self.ours)[_slices(ranges)]

    def _full(self, read_hf) -> np.ndarray:
        from mathjax_vl.hf.leaves import _to_ours

        return _to_ours(read_hf(None), self.kind, self.ours)


class ImportedLeaf(LazyArray):
    """One of our leaves, made from HF tensors `keys` (one per stacked layer, or one)."""

    def __init__(self, src: Any, keys: list[str], layout: HFLayout, shape, dtype, stacked: bool):
        self.src, self.keys, self.layout, self.stacked = src, keys, layout, stacked
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    def read(self, index: Index | None = None) -> np.ndarray:
        ranges = normalize(index, self.shape)
        if not self.stacked:
            return self._one(self.keys[0], ranges)
        out = np.empty(tuple(len(r) for r in ranges), self.dtype)
        for j, layer in enumerate(ranges[0]):
            out[j] = self._one(self.keys[layer], ranges[1:])
        return out

    def _one(self, key: str, ranges: tuple[range, ...]) -> np.ndarray:
        part = self.layout.read(lambda idx: self.src.read(key, idx), ranges)
        return part.astype(self.dtype, copy=False)


class ExportedTensor(LazyArray):
    """One HF tensor made from (one layer of) our leaf `value`. A layout-free tensor (e.g. an
    embedding) is read region by region; a transposed one is converted whole (one layer)."""

    def __init__(self, value: Any, kind: str, hf_shape: tuple[int, ...]):
        self.value, self.kind = value, kind
        self.shape, self.dtype = tuple(hf_shape), np.dtype(value.dtype)
        self.direct = kind == "copy" and tuple(value.shape) == self.shape

    def read(self, index: Index | None = None) -> np.ndarray:
        from mathjax_vl.hf.leaves import _to_hf

        if self.direct:
            return np.asarray(self.value.read(index))
        a = _to_hf(np.asarray(self.value.read()), self.kind, self.shape)
        return a if index is None else a[_slices(normalize(index, self.shape))]

    def blocks(self, max_bytes: int) -> Iterator[np.ndarray]:
        if self.direct:
            yield from super().blocks(max_bytes)
            return
        whole = self.read()
        rows = max(
            1, max_bytes // max(1, whole.nbytes // max(1, whole.shape[0] if whole.ndim else 1))
        )
        if whole.ndim == 0 or whole.nbytes <= max_bytes:
            yield whole
            return
        for r in range(0, whole.shape[0], rows):
            yield whole[r : r + rows]
