"""Decoder layers against float64 NumPy references and closed forms."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mathjax_vl.models import layers


def _rand(seed, *shape, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _randomize(variables, seed):
    """Replace every parameter with noise so biases/norm scales are exercised too."""
    leaves, treedef = jax.tree.flatten(nn.meta.unbox(variables))
    return jax.tree.unflatten(
        treedef, [_rand(seed + i, *x.shape, scale=0.5) for i, x in enumerate(leaves)]
    )


def test_rmsnorm_matches_numpy():
    x = _rand(0, 2, 3, 8) * 3
    norm = layers.RMSNorm(eps=1e-6)
    v = _randomize(norm.init(jax.random.PRNGKey(0), x), 1)
    y = norm.apply(v, x)
    x64, s64 = x.astype(np.float64), np.asarray(v["params"]["scale"], np.float64)
    ref = x64 / np.sqrt(np.mean(x64**2, axis=-1, keepdims=True) + 1e-6) * s64
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def _np_rope(x, pos, theta):
    """float64 RoPE as a complex rotation: x [B, T, N, D], pairs (i, i + D/2) ("rotate half",
    as HF Qwen2) turned by pos * theta^(-2i/D)."""
    d = x.shape[-1]
    half = d // 2
    x = np.asarray(x, np.float64)
    z = x[..., :half] + 1j * x[..., half:]
    freq = theta ** (-np.arange(half) * 2.0 / d)
    z = z * np.exp(1j * np.asarray(pos, np.float64)[:, :, None, None] * freq)
    return np.concatenate([z.real, z.imag], axis=-1)


def test_rope_matches_complex_rotation_and_is_relative():
    b, t, n, d, theta = 2, 7, 3, 8, 500.0
    x = _rand(2, b, t, n, d)
    pos = np.random.default_rng(3).integers(0, 1000, size=(b, t))
    y = np.asarray(layers.apply_rope(jnp.asarray(x), jnp.asarray(pos), theta), np.float64)
    np.testing.assert_allclose(y, _np_rope(x, pos, theta), atol=2e-4)
    # <rope(q, m), rope(k, m + 5)> does not depend on m.
    q, k = _rand(4, 1, 1, 1, d), _rand(5, 1, 1, 1, d)
    dots = []
    for m in (0, 17, 300):
        rq = layers.apply_rope(jnp.asarray(q), jnp.asarray([[m]]), theta)
        rk = layers.apply_rope(jnp.asarray(k), jnp.asarray([[m + 5]]), theta)
        dots.append(float(jnp.sum(rq * rk)))
    np.testing.assert_allclose(dots, dots[0], rtol=1e-4)


def test_attention_mask_closed_form():
    idx = jnp.arange(4)
    valid = jnp.asarray([[0, 1, 1, 1]])
    seg = jnp.asarray([[1, 1, 2, 2]])
    m = np.asarray(layers.make_attention_mask(idx, idx, valid, seg, seg))[0, 0].astype(int)
    expected = np.array([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]])
    np.testing.assert_array_equal(m, expected)


def _numpy_attention(p, x, pos, mask, heads, kv_heads, d, theta):
    x = x.astype(np.float64)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    proj = lambda name: np.einsum("btd,dnh->btnh", x, p[name]["kernel"]) + p[name]["bias"]
    q, k, v = proj("q_proj"), proj("k_proj"), proj("v_proj")
    q, k = _np_rope(q, pos, theta), _np_rope(k, pos, theta)  # NumPy, not the code under test
    g = heads // kv_heads
    k, v = np.repeat(k, g, axis=2), np.repeat(v, g, axis=2)  # head h uses kv head h // g
    s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d)
    s = np.where(mask, s, -1e30)
    w = np.exp(s - s.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    o = np.einsum("bhqk,bkhd->bqhd", w, v)
    return np.einsum("bqhd,hde->bqe", o, p["o_proj"]["kernel"])


def test_gqa_attention_matches_numpy_and_cache_chunks():
    b, t, e, heads, kv_heads, d, theta = 2, 6, 16, 4, 2, 8, 10000.0
    x = _rand(6, b, t, e)
    pos = jnp.broadcast_to(jnp.arange(t), (b, t))
    valid = jnp.asarray([[1] * t, [0, 0, 1, 1, 1, 1]])
    idx = jnp.arange(t)
    mask = layers.make_attention_mask(idx, idx, valid)
    attn = layers.Attention(heads, kv_heads, d, theta)
    v = _randomize(jax.jit(attn.init)(jax.random.PRNGKey(0), x, pos, mask), 7)
    apply = jax.jit(attn.apply)  # eager Flax dispatch is slow op by op
    y, _ = apply(v, x, pos, mask)
    ref = _numpy_attention(v["params"], x, pos, np.asarray(mask), heads, kv_heads, d, theta)
    rows = np.asarray(valid, bool)
    np.testing.assert_allclose(np.asarray(y)[rows], ref[rows], rtol=1e-4, atol=1e-5)

    # Same tokens fed through a KV cache in two chunks (3 + 3) give the same outputs.
    s = 8
    cache = (jnp.zeros((b, s, kv_heads, d)), jnp.zeros((b, s, kv_heads, d)))
    slot_valid = jnp.zeros((b, s), bool).at[:, :t].set(valid.astype(bool))
    outs = []
    for start, stop in ((0, 3), (3, 6)):
        cmask = layers.make_attention_mask(jnp.arange(start, stop), jnp.arange(s), slot_valid)
        out, cache = apply(v, x[:, start:stop], pos[:, start:stop], cmask, cache, start)
        outs.append(out)
    np.testing.assert_allclose(np.concatenate(outs, 1)[rows], np.asarray(y)[rows], atol=1e-5)

    # The jax.nn.dot_product_attention path computes the same thing.
    fused = layers.Attention(heads, kv_heads, d, theta, impl="dot_product_attention")
    y_fused, _ = jax.jit(fused.apply)(v, x, pos, mask)
    np.testing.assert_allclose(np.asarray(y_fused)[rows], np.asarray(y)[rows], atol=1e-5)


def test_swiglu_dense_embed_match_numpy():
    x = _rand(8, 2, 3, 8)
    mlp = layers.SwiGLU(hidden_dim=12)
    v = _randomize(mlp.init(jax.random.PRNGKey(0), x), 9)["params"]
    g = x @ v["gate_proj"]["kernel"]
    ref = (g / (1 + np.exp(-g)) * (x @ v["up_proj"]["kernel"])) @ v["down_proj"]["kernel"]
    np.testing.assert_allclose(jax.jit(mlp.apply)({"params": v}, x), ref, rtol=1e-5, atol=1e-5)

    dense = layers.Dense((5,), ("heads", "head_dim"), ("embed",), use_bias=True)
    xh = _rand(10, 2, 3, 4, 6)
    dv = _randomize(dense.init(jax.random.PRNGKey(0), xh), 11)["params"]
    ref = xh.reshape(2, 3, 24) @ np.asarray(dv["kernel"]).reshape(24, 5) + dv["bias"]
    np.testing.assert_allclose(dense.apply({"params": dv}, xh), ref, rtol=1e-5, atol=1e-5)

    emb = layers.Embed(11, 8)
    ids = jnp.asarray([[1, 3, 10]])
    ev = emb.init(jax.random.PRNGKey(0), ids)
    table = np.asarray(nn.meta.unbox(ev)["params"]["embedding"])
    np.testing.assert_array_equal(emb.apply(ev, ids), table[np.asarray(ids)])
    np.testing.assert_allclose(
        emb.apply(ev, x, method=layers.Embed.attend), x @ table.T, rtol=1e-5, atol=1e-6
    )


def test_blocked_causal_attention_matches_numpy_with_padding_and_segments():
    """Query blocks that skip the keys above the diagonal give the full attention's outputs and
    gradients (left padding and packed segments included), for block sizes that do and do not
    divide T, and the block count is capped for long sequences."""
    b, t, e, heads, kv_heads, d, theta = 2, 21, 16, 4, 2, 8, 10000.0
    x = _rand(16, b, t, e)
    pos = jnp.broadcast_to(jnp.arange(t), (b, t))
    valid = jnp.asarray([[1] * t, [0] * 3 + [1] * (t - 3)])
    seg = jnp.asarray([[1] * 9 + [2] * 12, [0] * 3 + [1] * (t - 3)])
    idx = jnp.arange(t)
    mask = layers.make_attention_mask(idx, idx, valid, seg, seg)
    full = layers.Attention(heads, kv_heads, d, theta, query_block=0)
    v = _randomize(jax.jit(full.init)(jax.random.PRNGKey(0), x, pos, mask), 17)
    ref = _numpy_attention(v["params"], x, pos, np.asarray(mask), heads, kv_heads, d, theta)
    rows = np.asarray(valid, bool)
    weights = jnp.asarray(_rand(18, b, t, e)) * valid[:, :, None]  # loss on valid rows only

    def loss_and_grads(module):
        f = lambda p, x: jnp.sum(module.apply({"params": p}, x, pos, mask)[0] * weights)
        return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(v["params"], x)

    want, (gp_want, gx_want) = loss_and_grads(full)
    for blk in (4, 7, 32):
        blocked = layers.Attention(heads, kv_heads, d, theta, query_block=blk)
        y, _ = jax.jit(blocked.apply)(v, x, pos, mask)
        np.testing.assert_allclose(np.asarray(y)[rows], ref[rows], rtol=1e-4, atol=1e-5)
        got, (gp, gx) = loss_and_grads(blocked)
        np.testing.assert_allclose(got, want, rtol=1e-5)
        np.testing.assert_allclose(gx, gx_want, rtol=1e-4, atol=1e-5)
        for a, w in zip(jax.tree.leaves(gp), jax.tree.leaves(gp_want)):
            np.testing.assert_allclose(a, w, rtol=1e-4, atol=1e-5)

    # 21 tokens with query_block 1 would be 21 blocks: capped at MAX_QUERY_BLOCKS.
    tiny = layers.Attention(heads, kv_heads, d, theta, query_block=1)
    jaxpr = str(jax.make_jaxpr(lambda x: tiny.apply(v, x, pos, mask))(x))
    n_softmax_blocks = jaxpr.count("reduce_max")
    assert n_softmax_blocks == -(-t // -(-t // layers.MAX_QUERY_BLOCKS))
