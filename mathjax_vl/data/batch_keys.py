"""Declared batch keys: each objective states every array of its batch once (shape, dtype, pad).

An objective module (mathjax_vl.train.tasks.<name>) declares ``{key: BatchKey}``; the pipeline
checks what its collate produced against it, the trainer's adapter pads to the compiled shapes
from it, the task's ``batch_spec`` is derived from it and the synthetic source is checked
against it. Shapes are symbolic after the batch axis, resolved by a ``dims`` mapping, e.g.
``("L",)`` with ``{"L": seq_len}``; ints are literal sizes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

ARANGE = "arange"  # pad value meaning: keep counting 0, 1, ... into the padding (positions)


@dataclasses.dataclass(frozen=True)
class BatchKey:
    """One batch array: ``shape`` after the leading batch axis (symbols or ints), its dtype,
    and the value the padding gets (``ARANGE``: positions that keep counting, masked anyway)."""

    shape: tuple[str | int, ...]
    dtype: Any = np.int32
    pad: int | float | str = 0

    def resolve(self, dims: Mapping[str, int]) -> tuple[int, ...]:
        """Concrete shape after the batch axis; a symbol missing from ``dims`` is an error."""
        out = []
        for d in self.shape:
            if isinstance(d, str):
                if d not in dims:
                    raise KeyError(f"batch dim {d!r} has no size; known: {sorted(dims)}")
                out.append(int(dims[d]))
            else:
                out.append(int(d))
        return tuple(out)


class BatchKeyError(ValueError):
    """A batch's keys differ from its objective's declaration."""


def check_keys(
    objective: str, declared: Iterable[str], produced: Iterable[str], where: str
) -> None:
    """Raise naming the objective and every key produced but not declared (or the reverse)."""
    declared, produced = set(declared), set(produced)
    extra, missing = sorted(produced - declared), sorted(declared - produced)
    if extra or missing:
        parts = []
        if extra:
            parts.append(f"produces undeclared keys {extra}")
        if missing:
            parts.append(f"declares keys it did not produce {missing}")
        raise BatchKeyError(
            f"objective {objective!r}: {where} {' and '.join(parts)}; declared: {sorted(declared)}"
        )


def pad_batch(
    batch: Mapping[str, np.ndarray],
    keys: Mapping[str, BatchKey],
    dims: Mapping[str, int],
    batch_size: int,
    objective: str,
) -> dict[str, np.ndarray]:
    """Pad every array up to its declared shape with its declared pad value (never cut: a larger
    array is an error naming the key), cast to the declared dtype."""
    check_keys(objective, keys, batch, "batch")
    out = {}
    for key, decl in keys.items():
        arr = np.asarray(batch[key])
        target = (batch_size, *decl.resolve(dims))
        if arr.ndim != len(target) or any(a > t for a, t in zip(arr.shape, target)):
            raise ValueError(
                f"objective {objective!r}: batch key {key!r} has shape {arr.shape}, larger than "
                f"(or a different rank from) the compiled shape {target}; raise data.seq_len / "
                "response_len"
            )
        if decl.pad == ARANGE:
            # [B, L] positions: keep counting into the padding
            full = np.broadcast_to(np.arange(target[1], dtype=decl.dtype), target).copy()
            full[: arr.shape[0], : arr.shape[1]] = arr
            out[key] = full
            continue
        pads = [(0, t - a) for a, t in zip(arr.shape, target)]
        out[key] = np.pad(arr, pads, constant_values=decl.pad).astype(decl.dtype)
    return out
