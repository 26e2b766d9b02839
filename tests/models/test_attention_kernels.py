"""Segment-aware attention kernels equal the XLA reference: values and gradients, float32 to
1e-5 (bfloat16 within 2e-2 of the float32 reference), with packed segments, padding and GQA.
Splash runs in Pallas interpret mode on CPU; the cuDNN path's plumbing and segment mask run
through the same jax.nn.dot_product_attention call with implementation="xla"."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mathjax_vl.models import attention_kernels as ak

B, T, H, KV, D = 2, 128, 4, 2, 16
SCALE = D**-0.5
F32 = dict(rtol=1e-5, atol=1e-5)
BF16_ATOL = 2e-2  # bf16 inputs, float32 accumulation inside the kernels; outputs are O(1)


def _segments() -> np.ndarray:
    row0 = [1] * 40 + [2] * 50 + [3] * 20 + [0] * 18  # three packed examples, then padding
    row1 = [1] * 100 + [0] * 28  # one example, then padding
    return np.array([row0, row1], np.int32)


def _inputs(dtype=jnp.float32):
    ks = jax.random.split(jax.random.key(0), 4)
    q = jax.random.normal(ks[0], (B, T, H, D), jnp.float32)
    k = jax.random.normal(ks[1], (B, T, KV, D), jnp.float32)
    v = jax.random.normal(ks[2], (B, T, KV, D), jnp.float32)
    w = jax.random.normal(ks[3], (B, T, H, D), jnp.float32)  # cotangent weights
    return q.astype(dtype), k.astype(dtype), v.astype(dtype), w


def _numpy_reference(q, k, v, seg):
    """float64, loop per row and head: causal, same segment, real keys; GQA by h // (H // KV)."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    out = np.zeros_like(q)
    g = H // KV
    for b in range(B):
        for h in range(H):
            s = q[b, :, h] @ k[b, :, h // g].T * SCALE
            ok = np.tril(np.ones((T, T), bool)) & (seg[b][:, None] == seg[b][None, :])
            ok &= (seg[b] > 0)[None, :]
            s = np.where(ok, s, -np.inf)
            real = ok.any(axis=1)
            s[~real] = 0.0
            p = np.exp(s - s.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            out[b, :, h] = np.where(real[:, None], p @ v[b, :, h // g], 0.0)
    return out


def _loss(kernel, seg, w):
    real = (jnp.asarray(seg) > 0)[:, :, None, None]

    def f(q, k, v):
        out = kernel(q, k, v, jnp.asarray(seg), scale=SCALE).astype(jnp.float32)
        return jnp.sum(jnp.where(real, out, 0.0) * w)

    return f


KERNELS = {
    "dot_product_attention": ak.dot_product_attention,
    "cudnn_call_via_xla": functools.partial(ak._dpa, impl="xla"),
    "splash": ak.splash_attention,
}


@pytest.fixture(scope="module")
def reference():
    seg = _segments()
    q, k, v, w = _inputs()
    want = _numpy_reference(q, k, v, seg)
    ref_grads = jax.grad(_loss(ak.reference_attention, seg, w), argnums=(0, 1, 2))(q, k, v)
    return seg, (q, k, v, w), want, ref_grads


def test_reference_matches_float64_numpy_and_the_layers_mask(reference):
    seg, (q, k, v, _), want, _ = reference
    real = seg > 0
    got = np.asarray(ak.reference_attention(q, k, v, jnp.asarray(seg), scale=SCALE))
    np.testing.assert_allclose(got[real], want[real], **F32)
    from mathjax_vl.models.layers import make_attention_mask

    idx = jnp.arange(T)
    dense = make_attention_mask(idx, idx, jnp.asarray(real), jnp.asarray(seg), jnp.asarray(seg))
    np.testing.assert_array_equal(
        np.asarray(dense)[real[:, None, :, None].repeat(T, -1)],
        np.asarray(ak.dense_mask(jnp.asarray(seg)))[real[:, None, :, None].repeat(T, -1)],
    )


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernel_values_and_grads_float32(name, reference):
    seg, (q, k, v, w), want, ref_grads = reference
    kernel = KERNELS[name]
    real = seg > 0
    got = np.asarray(jax.jit(lambda *a: kernel(*a, scale=SCALE))(q, k, v, jnp.asarray(seg)))
    np.testing.assert_allclose(got[real], want[real], **F32)
    grads = jax.jit(jax.grad(_loss(kernel, seg, w), argnums=(0, 1, 2)))(q, k, v)
    for name_, g, r in zip("qkv", grads, ref_grads):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), **F32, err_msg=name_)
    # padding keys get no gradient: no real query attends to them
    np.testing.assert_array_equal(np.asarray(grads[1])[~real], 0.0)


@pytest.mark.parametrize("name", ["dot_product_attention", "splash"])
def test_kernel_bfloat16_within_bound(name, reference):
    seg, _, want, _ = reference
    q, k, v, _ = _inputs(jnp.bfloat16)
    got = jax.jit(lambda *a: KERNELS[name](*a, scale=SCALE))(q, k, v, jnp.asarray(seg))
    assert got.dtype == jnp.bfloat16
    real = seg > 0
    err = np.abs(np.asarray(got, np.float32)[real] - want[real]).max()
    assert err < BF16_ATOL, err


def test_splash_rejects_a_sequence_off_the_block_grid():
    q = jnp.zeros((1, 96, 2, 16))
    k = jnp.zeros((1, 96, 1, 16))
    with pytest.raises(ValueError, match="multiple of 128"):
        ak.splash_attention(q, k, k, jnp.ones((1, 96), jnp.int32), scale=1.0)


def test_splash_partition_specs_follow_rules_and_keep_the_sequence_whole():
    import flax.linen as nn

    rules = (("batch", ("data", "fsdp")), ("length", None), ("heads", "tensor"))
    with nn.logical_axis_rules(rules):
        qs, kvs, segs = ak.splash_partition_specs(
            {"data": 2, "fsdp": 2, "tensor": 2}, (8, 256, 4, 16), kv_heads=2
        )
        assert qs == jax.sharding.PartitionSpec(("data", "fsdp"), None, ("tensor",), None)
        assert kvs == qs and segs == jax.sharding.PartitionSpec(("data", "fsdp"), None)
        # one KV head cannot be split over tensor=2: heads stay whole
        qs, _, _ = ak.splash_partition_specs(
            {"data": 1, "fsdp": 1, "tensor": 2}, (8, 256, 4, 16), 1
        )
        assert qs[2] is None
    with nn.logical_axis_rules((("batch", "data"), ("length", "fsdp"), ("heads", None))):
        with pytest.raises(ValueError, match="sequence unsharded"):
            ak.splash_partition_specs({"data": 1, "fsdp": 2}, (8, 256, 4, 16), 2)


def test_registry_names_every_kernel():
    assert set(ak.KERNELS) == {"splash", "cudnn", "dot_product_attention"}
    with pytest.raises(ValueError, match="no kernel"):
        ak.get("flash9")


@pytest.mark.parametrize(
    "impl,grads",
    [
        ("dot_product_attention", False),
        pytest.param("dot_product_attention", True, marks=pytest.mark.slow),
        pytest.param("splash", True, marks=pytest.mark.slow),  # ~2 min on a loaded CPU
    ],
)
def test_decoder_with_kernel_equals_xla_path_on_packed_rows(impl, grads):
    """The dispatch point: Qwen2 (scan over 2 GQA layers) on packed rows with restarting
    positions gives the XLA path's hidden states (1e-5) and parameter gradients at real tokens
    (within 1e-5 of each leaf's largest entry)."""
    import dataclasses

    from mathjax_vl.models.qwen2 import Qwen2, Qwen2Config
    from mathjax_vl.train.config_base import tiny_decoder

    cfg = Qwen2Config(**tiny_decoder())
    seg = jnp.asarray(_segments())
    real = seg > 0
    pos = jnp.asarray(
        np.concatenate([np.arange(40), np.arange(50), np.arange(20), np.zeros(18)])[None]
        .repeat(2, 0)
        .astype(np.int32)
    )
    pos = pos.at[1].set(jnp.where(real[1], jnp.arange(T), 0))
    ids = jax.random.randint(jax.random.key(3), (B, T), 0, cfg.vocab_size)
    ref_model = Qwen2(cfg)
    params = ref_model.init(jax.random.key(0), ids, return_logits=False)["params"]
    kernel_model = Qwen2(dataclasses.replace(cfg, attention_impl=impl))

    def run(model, p):
        out = model.apply(
            {"params": p}, ids, positions=pos, attention_mask=real, segment_ids=seg,
            return_logits=False,
        )  # fmt: skip
        return out.hidden_states

    w = jax.random.normal(jax.random.key(5), (B, T, cfg.hidden_size))

    def loss(model, p):  # linear in the hidden states: well conditioned in float32
        return jnp.mean(jnp.where(real[:, :, None], run(model, p) * w, 0.0))

    want = np.asarray(jax.jit(lambda p: run(ref_model, p))(params))
    got = np.asarray(jax.jit(lambda p: run(kernel_model, p))(params))
    np.testing.assert_allclose(got[np.asarray(real)], want[np.asarray(real)], **F32)
    if not grads:
        return
    g_ref = jax.jit(jax.grad(lambda p: loss(ref_model, p)))(params)
    g_got = jax.jit(jax.grad(lambda p: loss(kernel_model, p)))(params)
    for a, b in zip(jax.tree.leaves(g_got), jax.tree.leaves(g_ref)):
        a, b = np.asarray(a), np.asarray(b)
        assert np.abs(b).max() > 0
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())
