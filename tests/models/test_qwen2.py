"""Qwen2 decoder parity with PyTorch transformers (float32, tiny random models) and internal
consistency (scan vs loop, remat, hidden-state path, inputs_embeds, packed segments)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mathjax_vl.hf.qwen2 import load_qwen2
from mathjax_vl.models.qwen2 import Qwen2, embedding_table, lm_head_weight

TOL = 1e-4


def make_hf_qwen2(path, *, heads=4, kv=2, tied=False, layers=2, hidden=32, theta=10000.0, seed=0):
    """Saves a tiny random Qwen2ForCausalLM (all weights randomised, biases and norms too)."""
    import torch
    import transformers

    cfg = transformers.Qwen2Config(
        vocab_size=97,
        hidden_size=hidden,
        intermediate_size=2 * hidden + 8,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        tie_word_embeddings=tied,
        rope_theta=theta,
        rms_norm_eps=1e-6,
        max_position_embeddings=4096,
    )
    torch.manual_seed(seed)
    model = transformers.Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn_like(p)
            p.copy_(1.0 + 0.1 * noise if name.endswith("norm.weight") else 0.2 * noise)
    model.save_pretrained(path)
    return model


def hf_logits(model, ids, mask=None):
    import torch

    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(np.asarray(ids), dtype=torch.long),
            attention_mask=None if mask is None else torch.tensor(np.asarray(mask)),
        )
    return out.logits.numpy()


CASES = {
    "gqa1_tied": dict(heads=4, kv=4, tied=True),
    "gqa2_untied": dict(heads=4, kv=2, tied=False),
    "gqa4_tied": dict(heads=4, kv=1, tied=True, theta=12345.0),
}


def _load(name, tmp_path_factory):
    path = str(tmp_path_factory.mktemp(name))
    hf = make_hf_qwen2(path, **CASES[name])
    cfg, params = load_qwen2(path)
    return hf, cfg, params


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    """Every GQA ratio / tying case, for the parity tests."""
    return _load(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    """One case (GQA 2, untied) for the internal-consistency tests."""
    return _load("gqa2_untied", tmp_path_factory)


def _jit_apply(cfg, method=None, **static):
    """model.apply jitted and memoised per (cfg, method, static kwargs), so tests that run the
    same config share compilations; `static` are Python-valued kwargs (e.g. return_logits)."""
    return _jit_apply_cached(cfg, method, tuple(sorted(static.items())))


@functools.cache
def _jit_apply_cached(cfg, method, static):
    model = Qwen2(cfg)
    kw_static = dict(static)
    return jax.jit(
        lambda p, *args, **kw: model.apply({"params": p}, *args, method=method, **kw_static, **kw)
    )


def _forward(cfg):
    """A jitted forward (eager Flax apply is slow op by op)."""
    model = Qwen2(cfg)
    return jax.jit(lambda p, ids, mask: model.apply({"params": p}, ids, attention_mask=mask))


def _ids(rng, b, t):
    return rng.integers(0, 97, size=(b, t)).astype(np.int32)


def test_logits_match_transformers_with_padding(pair):
    hf, cfg, params = pair
    rng = np.random.default_rng(0)
    ids = _ids(rng, 3, 12)
    lengths = np.array([12, 7, 3])
    right = (np.arange(12)[None] < lengths[:, None]).astype(np.int32)
    left = right[:, ::-1].copy()
    fwd = _forward(cfg)
    for mask in (np.ones_like(right), right, left):
        ours = fwd(params, jnp.asarray(ids), jnp.asarray(mask)).logits
        ref = hf_logits(hf, ids, mask)
        valid = mask.astype(bool)
        diff = np.abs(np.asarray(ours) - ref)[valid]
        assert diff.max() <= TOL, diff.max()


def test_long_prompt_rope(tmp_path):
    """600 tokens with a large theta: wrong RoPE layout or frequencies show up here."""
    path = str(tmp_path / "long")
    hf = make_hf_qwen2(path, heads=2, kv=1, hidden=16, layers=1, theta=1_000_000.0, seed=3)
    cfg, params = load_qwen2(path)
    ids = _ids(np.random.default_rng(1), 1, 600)
    ours = _forward(cfg)(params, jnp.asarray(ids), None).logits
    diff = np.abs(np.asarray(ours) - hf_logits(hf, ids))
    assert diff.max() <= TOL, diff.max()


def test_hidden_states_path_and_lm_head_weight(one):
    _, cfg, params = one
    ids = jnp.asarray(_ids(np.random.default_rng(2), 2, 9))
    full = _jit_apply(cfg)(params, ids)
    lean = _jit_apply(cfg, return_logits=False)(params, ids)
    assert lean.logits is None
    w = lm_head_weight(params, cfg)
    assert w.shape == (cfg.vocab_size, cfg.hidden_size)
    assert (w is embedding_table(params)) == cfg.tie_word_embeddings
    np.testing.assert_allclose(lean.hidden_states @ w.T, full.logits, atol=1e-5)


def test_inputs_embeds_equals_input_ids(one):
    _, cfg, params = one
    ids = jnp.asarray(_ids(np.random.default_rng(3), 2, 9))
    emb = _jit_apply(cfg, method=Qwen2.embed)(params, ids)
    np.testing.assert_array_equal(emb, embedding_table(params)[ids])
    a = _jit_apply(cfg)(params, ids).logits
    b = _jit_apply(cfg)(params, inputs_embeds=emb).logits
    np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="exactly one"):
        _jit_apply(cfg)(params, ids, inputs_embeds=emb)


def test_scan_and_loop_and_remat_agree(one):
    _, cfg, params = one
    ids = jnp.asarray(_ids(np.random.default_rng(4), 2, 9))
    ref = _jit_apply(cfg)(params, ids).logits
    unrolled = {
        f"layers_{i}": jax.tree.map(lambda x, i=i: x[i], params["layers"])
        for i in range(cfg.num_hidden_layers)
    }
    loop_params = {k: v for k, v in params.items() if k != "layers"} | unrolled
    loop_cfg = dataclasses.replace(cfg, scan_layers=False)
    out = _jit_apply(loop_cfg)(loop_params, ids).logits
    np.testing.assert_allclose(out, ref, atol=1e-5)
    # an unrolled scan keeps the stacked parameter layout and the values
    unroll_cfg = dataclasses.replace(cfg, scan_unroll=cfg.num_hidden_layers)
    out = _jit_apply(unroll_cfg)(params, ids).logits
    np.testing.assert_allclose(out, ref, atol=1e-5)

    def grad_fn(c):
        loss = lambda p: jnp.sum(Qwen2(c).apply({"params": p}, ids).logits ** 2)
        return jax.jit(jax.grad(loss))

    g_ref = grad_fn(cfg)(params)
    for policy in ("full",):  # the other policies differ only in what jax.checkpoint saves
        g_remat = grad_fn(dataclasses.replace(cfg, remat_policy=policy))(params)
        for a, b in zip(jax.tree.leaves(g_remat), jax.tree.leaves(g_ref)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.abs(b).max()))


def test_packed_segments_equal_separate_sequences(one):
    """Two sequences packed in one row (positions restart) == each run alone."""
    _, cfg, params = one
    rng = np.random.default_rng(5)
    a, b = _ids(rng, 1, 6), _ids(rng, 1, 5)
    packed = jnp.asarray(np.concatenate([a, b], axis=1))
    seg = jnp.asarray([[1] * 6 + [2] * 5])
    pos = jnp.asarray([list(range(6)) + list(range(5))])
    out = _jit_apply(cfg)(params, packed, positions=pos, segment_ids=seg).logits
    ref_a = _jit_apply(cfg)(params, jnp.asarray(a)).logits
    ref_b = _jit_apply(cfg)(params, jnp.asarray(b)).logits
    np.testing.assert_allclose(out[:, :6], ref_a, atol=1e-5)
    np.testing.assert_allclose(out[:, 6:], ref_b, atol=1e-5)


def test_init_annotations_and_bfloat16_policy(one):
    import flax.linen as nn

    _, cfg, params = one
    bcfg = dataclasses.replace(cfg, param_dtype="bfloat16", dtype="bfloat16")
    ids = jnp.asarray(_ids(np.random.default_rng(6), 2, 9))
    variables = jax.eval_shape(Qwen2(bcfg).init, jax.random.PRNGKey(0), ids)
    specs = nn.get_partition_spec(variables)["params"]
    assert tuple(specs["layers"]["self_attn"]["q_proj"]["kernel"]) == (
        "layers",
        "embed",
        "heads",
        "head_dim",
    )
    assert tuple(specs["embed_tokens"]["embedding"]) == ("vocab", "embed")
    assert nn.meta.unbox(variables)["params"]["norm"]["scale"].dtype == jnp.bfloat16
    shapes = jax.tree.map(lambda x: x.shape, nn.meta.unbox(variables)["params"])
    assert shapes == jax.tree.map(lambda x: x.shape, params)
    bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
    out = _jit_apply(bcfg)(bf16, ids).logits
    ref = _jit_apply(cfg)(params, ids).logits
    assert out.dtype == jnp.bfloat16
    scale = float(jnp.abs(ref).max())
    assert float(jnp.abs(out.astype(jnp.float32) - ref).max()) < 0.1 * scale


def test_sharded_forward_matches_single_device(one):
    """Params sharded by their logical axes over a (data 4, tensor 2) mesh of 8 fake devices,
    activations constrained by the model's logical names: same logits as one device."""
    import flax.linen as nn
    from jax.sharding import Mesh

    _, cfg, params = one
    rules = (
        ("batch", "data"),
        ("heads", "tensor"),
        ("kv_heads", "tensor"),
        ("mlp", "tensor"),
        ("vocab", None),  # 97 rows do not split in 2
        ("embed", None),
        ("length", None),
        ("head_dim", None),
        ("layers", None),
        ("norm", None),
    )
    mesh = Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "tensor"))
    ids = jnp.asarray(_ids(np.random.default_rng(7), 4, 8))
    ref = _jit_apply(cfg)(params, ids).logits
    abstract = jax.eval_shape(Qwen2(cfg).init, jax.random.PRNGKey(0), ids)
    specs = nn.get_partition_spec(abstract)["params"]
    shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
    sharded = jax.device_put(params, shardings)
    assert tuple(sharded["layers"]["mlp"]["up_proj"]["kernel"].sharding.spec) == (
        None,
        None,
        "tensor",
    )
    fresh = jax.jit(lambda p, x: Qwen2(cfg).apply({"params": p}, x).logits)  # traced under rules
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        out = fresh(sharded, ids)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5)


def test_config_hf_dict_round_trip_and_hashable():
    from mathjax_vl.hf.qwen2 import config_from_hf, config_to_hf
    from mathjax_vl.models.qwen2 import Qwen2Config

    hf = dict(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_parameters={"rope_type": "default", "rope_theta": 777.0},
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        max_position_embeddings=128,
        eos_token_id=[3, 4],
    )
    cfg = config_from_hf(hf, scan_layers=False, remat_policy="full")
    assert cfg.rope_theta == 777.0 and cfg.eos_token_id == (3, 4) and cfg.dim_per_head == 4
    hash(cfg)  # usable as a jit static argument
    back = config_to_hf(cfg)
    assert back["eos_token_id"] == [3, 4] and back["rope_parameters"]["rope_theta"] == 777.0
    assert config_from_hf(back, scan_layers=False, remat_policy="full") == cfg
    legacy = {k: v for k, v in hf.items() if k != "rope_parameters"} | {"rope_theta": 5.0}
    assert config_from_hf(legacy).rope_theta == 5.0
    with pytest.raises(ValueError, match="rope_type"):
        config_from_hf(hf | {"rope_parameters": {"rope_type": "yarn", "factor": 4.0}})
    with pytest.raises(ValueError, match="remat_policy"):
        Qwen2Config(remat_policy="sometimes")
    with pytest.raises(ValueError, match="scan_unroll must be >= 1.*got 0"):
        Qwen2Config(scan_unroll=0)
    with pytest.raises(ValueError, match="attention_query_block must be >= 0, got -1"):
        Qwen2Config(attention_query_block=-1)
