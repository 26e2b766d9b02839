"""Row layout: sequence packing for text-only data, bucketed right-padding for everything else.

Packing (text SFT): short conversations are concatenated into rows of exactly ``seq_len`` tokens,
each conversation a segment: ``segment_ids`` 1, 2, ... per segment (0 = padding), ``positions``
restarting at 0 in each segment (RoPE sees every conversation as if alone) and the model's
attention is block-diagonal over segments. Grain's first-fit packer does the bin packing and keeps
its state in the iterator checkpoint; this module fixes the padding values (-100 for labels) and
renames its outputs to the batch keys the trainer reads.

Multimodal packing (multimodal SFT, image-to-code, Math-PUMA pairs; ``layout = "packing"``):
examples go whole into rows of ``seq_len`` tokens and ``max_images`` image slots (a static image
budget per row, hence per batch) with the same segment ids / restarting positions, their images
in segment order; PUMA pairs are packed in lockstep (a pair's two sides get the same row index)
and their aligned response positions are shifted to index the packed rows. A window of examples
is packed first-fit decreasing; the state is the window's start plus rows emitted (exact resume).

Padding (``layout = "bucketed"``): a batch is right-padded to the smallest configured bucket
length that holds its longest row, so jit sees a handful of shapes instead of one per batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from mathjax_vl.losses.constants import IGNORE_INDEX


def bucket_length(length: int, buckets: Sequence[int]) -> int:
    """Smallest bucket >= length; a length above every bucket is an error (tokenization caps it)."""
    for b in sorted(buckets):
        if length <= b:
            return int(b)
    raise ValueError(f"row of {length} tokens exceeds the largest length bucket {max(buckets)}")


def pad_1d(rows: Sequence[np.ndarray], length: int, value: int) -> np.ndarray:
    """[n_i] rows -> [B, length] int32, right-padded with ``value``."""
    out = np.full((len(rows), length), value, np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


class _RenamePacked(grain.transforms.Map):
    """Grain packer output -> trainer keys, and no loss on a segment's first token.

    A segment's first label would be predicted by the previous segment's last position (the
    trainer shifts labels by one across the whole row); templated conversations start with a
    prompt token anyway, this makes it a guarantee.
    """

    def map(self, packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seg = packed["input_ids_segment_ids"].astype(np.int32)
        labels = packed["labels"].astype(np.int32)
        first = np.concatenate([[True], seg[1:] != seg[:-1]]) & (seg > 0)
        labels = np.where(first, IGNORE_INDEX, labels).astype(np.int32)
        return {
            "input_ids": packed["input_ids"].astype(np.int32),
            "labels": labels,
            "attention_mask": (seg > 0).astype(np.int32),
            "segment_ids": seg,
            "positions": packed["input_ids_positions"].astype(np.int32),
        }


def pack_rows(
    ds: grain.IterDataset,
    seq_len: int,
    pad_token_id: int,
    num_packing_bins: int,
    seed: int,
) -> grain.IterDataset:
    """Rows {input_ids [n], labels [n]} (n <= seq_len) -> packed rows of ``seq_len`` tokens."""
    packed = grain.experimental.FirstFitPackIterDataset(
        ds,
        length_struct={"input_ids": seq_len, "labels": seq_len},
        num_packing_bins=num_packing_bins,
        seed=seed,
        shuffle_bins=True,
        padding_struct={"input_ids": pad_token_id, "labels": IGNORE_INDEX},
    )
    return packed.map(_RenamePacked())


# ------------------------------------------------------------------ multimodal packing


@dataclasses.dataclass(frozen=True)
class PackSpec:
    """The static shape of one packed row.

    sides: key prefixes packed in lockstep ("" for SFT / image-to-code; "weak_", "strong_" for
      Math-PUMA pairs, whose two sides go to the same row index of their own packed arrays).
    seq_len: T, tokens per row and side.  max_images: M, image slots per row and side.
    response_len: R, aligned response slots per row (pairs only; 0 = no response arrays).
    image_shape: (H, W, C) of one processed image.
    """

    sides: tuple[str, ...]
    seq_len: int
    max_images: int
    image_shape: tuple[int, int, int]
    pad_token_id: int
    response_len: int = 0


@dataclasses.dataclass
class PackStats:
    """Fill of the packed rows emitted so far (part of the iterator state)."""

    rows: int = 0
    segments: int = 0
    real_tokens: int = 0
    computed_tokens: int = 0
    real_images: int = 0
    image_slots: int = 0

    def metrics(self) -> dict[str, float]:
        return {
            "packing/rows": float(self.rows),
            "packing/examples_per_row": self.segments / self.rows if self.rows else 0.0,
            "packing/token_fill": self.real_tokens / self.computed_tokens
            if self.computed_tokens
            else 0.0,
            "packing/image_fill": self.real_images / self.image_slots if self.image_slots else 0.0,
        }


def _example_size(ex: dict[str, np.ndarray], spec: PackSpec) -> tuple[tuple[int, int], ...]:
    """(tokens, images) per side, then (response, 0) for pairs."""
    out = tuple((len(ex[p + "input_ids"]), len(ex[p + "pixel_values"])) for p in spec.sides)
    if spec.response_len:
        out += ((len(ex["response_labels"]), 0),)
    return out


def _capacity(spec: PackSpec) -> tuple[tuple[int, int], ...]:
    cap = tuple((spec.seq_len, spec.max_images) for _ in spec.sides)
    return cap + (((spec.response_len, 0),) if spec.response_len else ())


def first_fit_decreasing(sizes: Sequence[tuple[tuple[int, int], ...]], spec: PackSpec) -> list:
    """Example indices -> rows (lists of indices in stream order): first fit, largest first.

    An example fits a row when every side's tokens and images and the response stay within the
    row's capacity; one that does not fit an empty row is an error (the processor rejects those
    as ``too_long`` records before they get here, nothing is ever cut)."""
    cap = _capacity(spec)
    for i, s in enumerate(sizes):
        if any(a > c or b > d for (a, b), (c, d) in zip(s, cap)):
            raise ValueError(f"example {i} of sizes {s} does not fit an empty row {cap}")
    order = sorted(range(len(sizes)), key=lambda i: -sum(a for a, _ in sizes[i]))
    rows: list[list[int]] = []
    used: list[list[list[int]]] = []
    for i in order:
        for r, u in enumerate(used):
            if all(
                ua + a <= c and ub + b <= d for (ua, ub), (a, b), (c, d) in zip(u, sizes[i], cap)
            ):
                rows[r].append(i)
                for k, (a, b) in enumerate(sizes[i]):
                    u[k][0] += a
                    u[k][1] += b
                break
        else:
            rows.append([i])
            used.append([[a, b] for a, b in sizes[i]])
    return [sorted(r) for r in rows]


def build_row(examples: Sequence[dict[str, np.ndarray]], spec: PackSpec) -> dict[str, np.ndarray]:
    """Examples -> one packed row (keys: the pipelines' batch keys plus segment_ids per side).

    Segments are laid out in order; ``positions`` restart at 0 per segment, images follow their
    segments' order (the VLM scatters image n into the n-th image-token run of the row), and a
    segment's first label is ignored (the previous segment's last position would predict it).
    Response positions of pairs are shifted by their segment's start in each side's row.
    """
    t, m = spec.seq_len, spec.max_images
    out: dict[str, np.ndarray] = {}
    starts: dict[str, list[int]] = {}
    for p in spec.sides:
        ids = np.full(t, spec.pad_token_id, np.int32)
        labels = np.full(t, IGNORE_INDEX, np.int32)
        seg = np.zeros(t, np.int32)
        pos = np.zeros(t, np.int32)
        pixels = np.zeros((m, *spec.image_shape), np.float32)
        image_mask = np.zeros(m, np.int32)
        at, n_img = 0, 0
        starts[p] = []
        for s, ex in enumerate(examples, start=1):
            x, y, px = ex[p + "input_ids"], ex[p + "labels"], ex[p + "pixel_values"]
            n = len(x)
            starts[p].append(at)
            ids[at : at + n] = x
            labels[at : at + n] = y
            labels[at] = IGNORE_INDEX
            seg[at : at + n] = s
            pos[at : at + n] = np.arange(n, dtype=np.int32)
            pixels[n_img : n_img + len(px)] = px
            image_mask[n_img : n_img + len(px)] = 1
            at += n
            n_img += len(px)
        out.update(
            {
                p + "input_ids": ids,
                p + "labels": labels,
                p + "attention_mask": (seg > 0).astype(np.int32),
                p + "segment_ids": seg,
                p + "positions": pos,
                p + "pixel_values": pixels,
                p + "image_mask": image_mask,
            }
        )
    if spec.response_len:
        r = spec.response_len
        arrays = {
            "weak_response_positions": np.zeros(r, np.int32),
            "strong_response_positions": np.zeros(r, np.int32),
            "response_labels": np.full(r, IGNORE_INDEX, np.int32),
            "response_mask": np.zeros(r, np.int32),
        }
        at = 0
        for s, ex in enumerate(examples):
            n = len(ex["response_labels"])
            for side in ("weak_", "strong_"):
                key = side + "response_positions"
                arrays[key][at : at + n] = ex[key] + starts[side][s]
            arrays["response_labels"][at : at + n] = ex["response_labels"]
            arrays["response_mask"][at : at + n] = 1
            at += n
        out.update(arrays)
    return out


class _PackIterator(grain.DatasetIterator):
    """Reads a window of examples, packs it (first-fit decreasing), emits its rows.

    State: the parent's state at the window's start and how many of its rows were emitted, so a
    restore re-reads the same window (the parent is deterministic), repacks it identically and
    skips the emitted rows: resume is exact and the state stays small and JSON-safe.
    """

    def __init__(self, parent: grain.DatasetIterator, spec: PackSpec, window: int) -> None:
        super().__init__(parent)
        self._spec = spec
        self._window = window
        self._window_state = parent.get_state()
        self._rows: list[list[dict[str, np.ndarray]]] = []
        self._emitted = 0
        self._skip = 0
        self.stats = PackStats()

    def _load(self) -> None:
        self._window_state = self._parent.get_state()
        examples = []
        for _ in range(self._window):
            try:
                examples.append(next(self._parent))
            except StopIteration:
                break
        if not examples:
            raise StopIteration
        sizes = [_example_size(e, self._spec) for e in examples]
        self._rows = [[examples[i] for i in r] for r in first_fit_decreasing(sizes, self._spec)]
        self._emitted, self._skip = min(self._skip, len(self._rows)), 0

    def __next__(self) -> dict[str, np.ndarray]:
        while self._emitted >= len(self._rows):
            self._load()
        segs = self._rows[self._emitted]
        self._emitted += 1
        row = build_row(segs, self._spec)
        st, sp = self.stats, self._spec
        st.rows += 1
        st.segments += len(segs)
        for p in sp.sides:
            st.real_tokens += int(row[p + "attention_mask"].sum())
            st.computed_tokens += sp.seq_len
            st.real_images += int(row[p + "image_mask"].sum())
            st.image_slots += sp.max_images
        return row

    def get_state(self) -> dict[str, Any]:
        return {
            "parent": self._window_state,
            "emitted": self._emitted,
            "stats": dataclasses.asdict(self.stats),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["parent"])
        self._window_state = state["parent"]
        self._rows, self._emitted, self._skip = [], 0, int(state["emitted"])
        self.stats = PackStats(**{k: int(v) for k, v in state["stats"].items()})


class PackExamplesIterDataset(grain.IterDataset):
    """Multimodal examples (SFT, image-to-code, PUMA pairs) -> packed rows of ``spec`` shapes.

    ``window``: examples packed together (more = denser rows; a window's examples are held in
    memory). ``stats()`` reads the live iterator's fill.
    """

    def __init__(self, parent: grain.IterDataset, spec: PackSpec, window: int) -> None:
        super().__init__(parent)
        if window < 1:
            raise ValueError(f"packing window must be >= 1, got {window}")
        self.spec = spec
        self.window = window
        self._live: _PackIterator | None = None

    def __iter__(self) -> grain.DatasetIterator:
        self._live = _PackIterator(self._parent.__iter__(), self.spec, self.window)
        return self._live

    def stats(self) -> PackStats:
        return self._live.stats if self._live is not None else PackStats()

    def __str__(self) -> str:
        return f"PackExamplesIterDataset(window={self.window}, spec={self.spec})"
