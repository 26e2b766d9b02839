"""Row layout: sequence packing for text-only data, bucketed right-padding for everything else.

Packing (text SFT): short conversations are concatenated into rows of exactly ``seq_len`` tokens,
each conversation a segment: ``segment_ids`` 1, 2, ... per segment (0 = padding), ``positions``
restarting at 0 in each segment (RoPE sees every conversation as if alone) and the model's
attention is block-diagonal over segments. Grain's first-fit packer does the bin packing and keeps
its state in the iterator checkpoint; this module fixes the padding values (-100 for labels) and
renames its outputs to the batch keys the trainer reads.

Padding (multimodal): a batch is right-padded to the smallest configured bucket length that holds
its longest row, so jit sees a handful of shapes instead of one per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

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
