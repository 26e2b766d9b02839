"""CLIP / SigLIP losses: float64 NumPy reference, and sharded over 8 fake devices == unsharded."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from mathjax_vl.losses.contrastive import (
    CLIP_INIT_LOG_SCALE,
    SIGLIP_INIT_BIAS,
    SIGLIP_INIT_LOG_SCALE,
    clip_loss,
    shard_contrastive,
    siglip_loss,
)

B, PDIM = 16, 12


def _np_norm(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _np_lse(x):
    m = x.max(-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[:, 0]


def np_clip(img, txt, log_scale):
    s = min(np.exp(log_scale), 100.0)
    logits = s * _np_norm(img.astype(np.float64)) @ _np_norm(txt.astype(np.float64)).T
    i = np.arange(len(img))
    return ((_np_lse(logits) - logits[i, i]).mean() + (_np_lse(logits.T) - logits[i, i]).mean()) / 2


def np_siglip(img, txt, log_scale, bias):
    logits = (
        np.exp(log_scale) * _np_norm(img.astype(np.float64)) @ _np_norm(txt.astype(np.float64)).T
        + bias
    )
    labels = 2 * np.eye(len(img)) - 1
    return np.sum(np.log1p(np.exp(-labels * logits))) / len(img)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(B, PDIM)).astype(np.float32)
    txt = (img + rng.normal(size=(B, PDIM))).astype(np.float32)
    return img, txt


def test_losses_match_float64_numpy(batch):
    img, txt = batch
    for ls in (CLIP_INIT_LOG_SCALE, 1.0, 5.0):  # 5.0 exceeds the cap of 100
        assert float(clip_loss(img, txt, jnp.float32(ls))) == pytest.approx(
            np_clip(img, txt, ls), rel=1e-5
        )
    got = siglip_loss(img, txt, jnp.float32(SIGLIP_INIT_LOG_SCALE), jnp.float32(SIGLIP_INIT_BIAS))
    assert float(got) == pytest.approx(np_siglip(img, txt, SIGLIP_INIT_LOG_SCALE, -10.0), rel=1e-5)


@pytest.mark.parametrize("mesh_shape,axes", [((8,), "data"), ((4, 2), ("data", "fsdp"))])
def test_sharded_loss_and_grads_equal_single_device(batch, mesh_shape, axes):
    assert len(jax.devices()) >= 8, "tests/conftest.py provides 8 fake CPU devices"
    names = (axes,) if isinstance(axes, str) else axes
    mesh = Mesh(np.array(jax.devices()[:8]).reshape(mesh_shape), names)
    img, txt = batch
    cases = [
        (clip_loss, np_clip, (jnp.float32(2.0),)),
        (siglip_loss, np_siglip, (jnp.float32(SIGLIP_INIT_LOG_SCALE), jnp.float32(-3.0))),
    ]
    for fn, np_fn, scalars in cases:
        argnums = tuple(range(2 + len(scalars)))
        single = jax.value_and_grad(fn, argnums=argnums)(img, txt, *scalars)
        sharded_fn = shard_contrastive(fn, mesh, axes)
        sharded = jax.jit(jax.value_and_grad(sharded_fn, argnums=argnums))(img, txt, *scalars)
        np.testing.assert_allclose(sharded[0], single[0], rtol=1e-6)
        for a, b in zip(sharded[1], single[1]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

        # The per-device mistake (negatives from the local shard only), run through the same
        # shard_contrastive: it gives the mean of the 8 row blocks' own losses (so the batch
        # really is split), which the single-device loss above tells apart.
        def local_only(i, t, *sc, axis_name, fn=fn):
            return jax.lax.pmean(fn(i, t, *sc), axis_name)

        wrong = float(jax.jit(shard_contrastive(local_only, mesh, axes))(img, txt, *scalars))
        b = B // 8
        blocks = [
            np_fn(img[k * b : (k + 1) * b], txt[k * b : (k + 1) * b], *map(float, scalars))
            for k in range(8)
        ]
        assert wrong == pytest.approx(float(np.mean(blocks)), rel=1e-5)
        assert abs(wrong - float(single[0])) > 1e-3


def test_bad_shapes_raise(batch):
    img, txt = batch
    with pytest.raises(ValueError, match="must both be"):
        clip_loss(img, txt[:3], jnp.float32(1.0))
