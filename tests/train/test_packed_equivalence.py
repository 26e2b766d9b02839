"""Packing changes the cost, not the math: the same examples give the same per-example losses and
the same gradients packed (several per row, segment ids) as one per padded row, for multimodal
SFT, image-to-code and Math-PUMA pairs with 0, 1 and 2 images per example (float32).

The unpacked reference batch is built by the objective's bucketed collate + the trainer's
pad_to_spec; the
packed one by the packer's row builder; both go through the tasks' real loss functions."""

from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mathjax_vl.data import packing, pipelines
from mathjax_vl.data.image_processing import ImageProcessingConfig
from mathjax_vl.data.tokenization import IGNORE_INDEX, TokenizationConfig
from mathjax_vl.train.config_loader import load_config
from mathjax_vl.train.pipeline_adapter import pad_to_spec
from mathjax_vl.train.tasks import build_task

CONFIGS = Path(__file__).parents[2] / "configs"
UNPACKED_T, PACKED_T, R = 48, 96, 32
IMAGES = (0, 1, 2, 1, 0, 2, 1)  # images per example (image-to-code: at least 1)
TOL = dict(rtol=1e-5, atol=1e-5)


def _config(name: str, layout: str, seq_len: int, max_images: int):
    c = load_config(str(CONFIGS / name))
    c.data.layout = layout
    c.data.seq_len = seq_len
    c.data.max_images = max_images
    c.data.response_len = R
    c.mesh.num_devices = 1
    return c


def _side(rng, n_img: int, image_tokens: int, image_id: int, response: np.ndarray):
    """[image runs][prompt][response] like a templated conversation, labels on the response."""
    prompt = rng.integers(1, 200, size=int(rng.integers(2, 6))).astype(np.int32)
    ids = np.concatenate(
        [np.full(n_img * image_tokens, image_id, np.int32), prompt, response]
    ).astype(np.int32)
    labels = np.full(len(ids), IGNORE_INDEX, np.int32)
    labels[len(ids) - len(response) :] = response
    pixels = rng.standard_normal((n_img, 16, 16, 3)).astype(np.float32)
    return {"input_ids": ids, "labels": labels, "pixel_values": pixels}


def _examples(task, pairs: bool, images=IMAGES):
    rng = np.random.default_rng(0)
    v = task.vlm_cfg
    out = []
    for n_img in images:
        response = rng.integers(1, 200, size=int(rng.integers(3, 9))).astype(np.int32)
        weak = _side(rng, n_img, v.image_seq_length, v.image_token_id, response)
        if not pairs:
            out.append(weak)
            continue
        strong = _side(rng, 0, v.image_seq_length, v.image_token_id, response)
        ex = {"weak_" + k: x for k, x in weak.items()}
        ex.update({"strong_" + k: x for k, x in strong.items()})
        for side in ("weak_", "strong_"):
            ex[side + "response_positions"] = np.flatnonzero(
                ex[side + "labels"][1:] != IGNORE_INDEX
            ).astype(np.int32)
        ex["response_labels"] = response
        out.append(ex)
    return out


def _unpacked_batch(task, examples, objective):
    cfg = pipelines.PipelineConfig(
        objective=task.name,
        batch_size=len(examples),
        tokenization=TokenizationConfig(max_length=UNPACKED_T),
        image=ImageProcessingConfig(height=16, width=16),
        length_buckets=(UNPACKED_T,),
        response_buckets=(R,),
        max_images_per_example=2,
    )
    batch = task.data.collate(examples, cfg, pad_token_id=0)
    return pad_to_spec(batch, task, len(examples))


def _packed_batch(task, examples, pairs, groups):
    spec = packing.PackSpec(
        sides=("weak_", "strong_") if pairs else ("",),
        seq_len=PACKED_T,
        max_images=task.max_images,
        image_shape=(16, 16, 3),
        pad_token_id=0,
        response_len=R if pairs else 0,
    )
    rows = [packing.build_row([examples[i] for i in g], spec) for g in groups]
    batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    want = task.batch_spec(len(rows))
    assert set(want) <= set(batch)
    for k, w in want.items():
        assert batch[k].shape == w.shape and batch[k].dtype == w.dtype, k
    return {k: batch[k] for k in want}


def _only(batch, keep, pairs):
    """The batch with loss taken only at the selected label / response slots."""
    out = dict(batch)
    if pairs:
        out["response_mask"] = np.where(keep, batch["response_mask"], 0)
    else:
        out["labels"] = np.where(keep, batch["labels"], IGNORE_INDEX)
    return out


# ~80 s each on a loaded 2-core box (four compiles of the tiny VLM step); the SFT case runs by
# default, the other two with the slow tests:
#   pytest -m slow tests/train/test_packed_equivalence.py
CASES = [
    ("tiny_multimodal_sft.py", "multimodal_sft", False, IMAGES),
    pytest.param(
        "tiny_image_to_code.py", "image_code", False, (1, 2, 1, 2, 1), marks=pytest.mark.slow
    ),
    pytest.param("tiny_puma_kl.py", "puma_pair", True, IMAGES, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(
    "name,objective,pairs,images", CASES, ids=["multimodal_sft", "image_code", "puma_pair"]
)
def test_packed_equals_unpacked(name, objective, pairs, images):
    flat = build_task(_config(name, "bucketed", UNPACKED_T, 2))
    packed = build_task(_config(name, "packing", PACKED_T, 4))
    examples = _examples(flat, pairs, images)
    groups = [[0, 1, 2], [3, 4], [5, 6]] if len(examples) == 7 else [[0, 1, 2], [3, 4]]
    ub = _unpacked_batch(flat, examples, objective)
    pb = _packed_batch(packed, examples, pairs, groups)
    assert (pb["weak_image_mask" if pairs else "image_mask"].sum(1) > 0).any()
    params = nn.unbox(jax.jit(packed.init)(jax.random.key(0), jax.tree.map(jnp.asarray, pb)))
    rng = jax.random.key(1)
    loss_u = jax.jit(lambda p, b: flat.loss(p, b, rng)[0])
    loss_p = jax.jit(lambda p, b: packed.loss(p, b, rng)[0])

    # Per-example losses: loss taken only on that example's tokens, in either layout.
    seg_key = "weak_segment_ids" if pairs else "segment_ids"
    for i in range(len(examples)):
        row = next(r for r, g in enumerate(groups) if i in g)
        s = groups[row].index(i) + 1
        if pairs:
            rows_u = np.arange(len(examples))[:, None] == i
            keep_u = np.broadcast_to(rows_u, ub["response_mask"].shape)
            owner = np.zeros_like(pb["response_mask"])
            at = 0
            for k, j in enumerate(groups[row]):
                n = len(examples[j]["response_labels"])
                owner[row, at : at + n] = k + 1
                at += n
            keep_p = owner == s
        else:
            keep_u = np.broadcast_to(np.arange(len(examples))[:, None] == i, ub["labels"].shape)
            keep_p = (np.arange(len(groups))[:, None] == row) & (pb[seg_key] == s)
        lu = float(loss_u(params, _only(ub, keep_u, pairs)))
        lp = float(loss_p(params, _only(pb, keep_p, pairs)))
        assert np.isfinite(lu) and lu > 0
        np.testing.assert_allclose(lp, lu, **TOL, err_msg=f"example {i}")

    # Whole-batch loss and gradients.
    (lu, gu) = jax.jit(jax.value_and_grad(lambda p, b: flat.loss(p, b, rng)[0]))(params, ub)
    (lp, gp) = jax.jit(jax.value_and_grad(lambda p, b: packed.loss(p, b, rng)[0]))(params, pb)
    np.testing.assert_allclose(float(lp), float(lu), **TOL)
    leaves_u, leaves_p = jax.tree.leaves(gu), jax.tree.leaves(gp)
    assert len(leaves_u) == len(leaves_p)
    nonzero = 0
    for a, b in zip(leaves_u, leaves_p):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), **TOL)
        nonzero += bool(np.abs(np.asarray(a)).max() > 0)
    assert nonzero > len(leaves_u) // 2  # the gradients are not trivially zero


@pytest.mark.slow
def test_puma_released_normalisation_counts_pairs_not_rows():
    """normalization="released" divides by the number of pairs: segments when packed."""
    flat_cfg = _config("tiny_puma_kl.py", "bucketed", UNPACKED_T, 2)
    packed_cfg = _config("tiny_puma_kl.py", "packing", PACKED_T, 4)
    for c in (flat_cfg, packed_cfg):
        c.loss.normalization = "released"
    flat, packed = build_task(flat_cfg), build_task(packed_cfg)
    examples = _examples(flat, True)
    ub = _unpacked_batch(flat, examples, "puma_pair")
    pb = _packed_batch(packed, examples, True, [[0, 1, 2], [3, 4], [5, 6]])
    assert int(packed.num_pairs(pb)) == 7
    params = nn.unbox(jax.jit(packed.init)(jax.random.key(0), jax.tree.map(jnp.asarray, pb)))
    rng = jax.random.key(1)
    lu = float(jax.jit(lambda p, b: flat.loss(p, b, rng)[0])(params, ub))
    lp = float(jax.jit(lambda p, b: packed.loss(p, b, rng)[0])(params, pb))
    np.testing.assert_allclose(lp, lu, **TOL)
