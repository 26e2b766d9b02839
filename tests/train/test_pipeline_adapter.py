"""Padding pipeline batches (length buckets) up to the compiled shapes, from the declared keys."""

import numpy as np
import pytest

from mathjax_vl.data.batch_keys import ARANGE, BatchKey, BatchKeyError, pad_batch

KEYS = {
    "input_ids": BatchKey(("L",), np.int32, 0),
    "labels": BatchKey(("L",), np.int32, -100),
    # a key no naming rule knows: its declaration alone says -100
    "chosen_labels": BatchKey(("L",), np.int32, -100),
    "positions": BatchKey(("L",), np.int32, ARANGE),
    "response_positions": BatchKey(("R",), np.int32, 0),
    "pixel_values": BatchKey(("M", "H", "W", 3), np.float32, 0.0),
}
DIMS = {"L": 6, "R": 3, "M": 2, "H": 2, "W": 2}


def _batch():
    return {
        "input_ids": np.array([[5, 6, 7, 8], [9, 1, 0, 0]], np.int32),
        "labels": np.array([[-100, 6, 7, 8], [-100, 1, -100, -100]], np.int32),
        "chosen_labels": np.ones((2, 4), np.int32),
        "positions": np.tile(np.arange(4, dtype=np.int32), (2, 1)),
        "response_positions": np.array([[3], [2]], np.int32),
        "pixel_values": np.ones((2, 1, 2, 2, 3), np.float64),
    }


def test_pad_batch_pads_with_the_declared_values():
    out = pad_batch(_batch(), KEYS, DIMS, 2, "toy")
    np.testing.assert_array_equal(out["input_ids"][0], [5, 6, 7, 8, 0, 0])
    np.testing.assert_array_equal(out["labels"][1], [-100, 1, -100, -100, -100, -100])
    np.testing.assert_array_equal(out["chosen_labels"][0], [1, 1, 1, 1, -100, -100])
    np.testing.assert_array_equal(out["positions"][1], np.arange(6))
    np.testing.assert_array_equal(out["response_positions"], [[3, 0, 0], [2, 0, 0]])
    assert out["pixel_values"].shape == (2, 2, 2, 2, 3)
    assert out["pixel_values"].dtype == np.float32
    np.testing.assert_array_equal(out["pixel_values"][:, 1], 0.0)
    np.testing.assert_array_equal(out["pixel_values"][:, 0], 1.0)


def test_pad_batch_never_cuts_and_checks_keys():
    batch = _batch()
    batch["input_ids"] = np.zeros((2, 7), np.int32)
    with pytest.raises(ValueError, match="objective 'toy': batch key 'input_ids' has shape"):
        pad_batch(batch, KEYS, DIMS, 2, "toy")
    batch = _batch()
    batch["rejected_labels"] = batch.pop("chosen_labels")
    with pytest.raises(BatchKeyError) as err:
        pad_batch(batch, KEYS, DIMS, 2, "toy")
    msg = str(err.value)
    assert "objective 'toy'" in msg
    assert "undeclared keys ['rejected_labels']" in msg
    assert "did not produce ['chosen_labels']" in msg
    with pytest.raises(KeyError, match="batch dim 'R' has no size"):
        pad_batch(_batch(), KEYS, {"L": 6, "M": 2, "H": 2, "W": 2}, 2, "toy")
