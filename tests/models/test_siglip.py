"""SigLIP vision tower vs PyTorch transformers (tiny random config, float32)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch  # test-only dependency: the dev extra pins torch==2.13.0
import transformers

from mathjax_vl.hf.siglip import load_siglip_vision
from mathjax_vl.models.siglip import SiglipVisionModel


@pytest.fixture(scope="module", params=[True, False], ids=["map_head", "no_head"])
def hf_siglip(request, tmp_path_factory):
    torch.manual_seed(0)
    hcfg = transformers.SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=26,  # 3 patches of 8 + 2 trailing pixels a valid conv ignores
        patch_size=8,
        vision_use_head=request.param,
    )
    model = transformers.SiglipVisionModel(hcfg).eval()
    d = tmp_path_factory.mktemp("siglip")
    model.save_pretrained(d)
    return model, d


def _import(d):
    cfg, params, ignored = load_siglip_vision(str(d))
    assert ignored == []
    return cfg, params


def test_siglip_vision_matches_transformers(hf_siglip):
    model, d = hf_siglip
    cfg, params = _import(d)
    x = np.random.RandomState(1).randn(2, 3, 26, 26).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.tensor(x), output_hidden_states=True)
    fwd = jax.jit(
        lambda p, px: SiglipVisionModel(cfg).apply(
            {"params": p}, px, feature_layers=(-2, -1, 0), collect_all=True
        )
    )
    out = fwd(params, jnp.asarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(out.last_hidden_state, ref.last_hidden_state.numpy(), atol=1e-4)
    if cfg.use_head:
        np.testing.assert_allclose(out.pooled, ref.pooler_output.numpy(), atol=1e-4)
    else:
        assert out.pooled is None
    assert out.hidden_states.shape[0] == len(ref.hidden_states) == cfg.num_layers + 1
    for i, h in enumerate(ref.hidden_states):
        np.testing.assert_allclose(out.hidden_states[i], h.numpy(), atol=1e-4)
    for feat, layer in zip(out.features, (-2, -1, 0)):
        np.testing.assert_allclose(feat, ref.hidden_states[layer].numpy(), atol=1e-4)


def test_remat_and_logical_axes(hf_siglip):
    _, d = hf_siglip
    cfg, params = _import(d)
    x = jnp.asarray(np.random.RandomState(2).randn(1, 26, 26, 3), jnp.float32)
    loss = lambda p, m: jnp.sum(m.apply({"params": p}, x, use_head=False).last_hidden_state ** 2)
    v0, g0 = jax.jit(jax.value_and_grad(lambda p: loss(p, SiglipVisionModel(cfg))))(params)
    with pytest.raises(ValueError, match="scan_unroll must be >= 1.*got 0"):
        SiglipVisionModel(dataclasses.replace(cfg, scan_unroll=0)).apply({"params": params}, x)
    # full remat, and a fully unrolled layer scan (same stacked params), change nothing
    for knob in ({"remat_policy": "full"}, {"scan_unroll": cfg.num_layers}):
        other = SiglipVisionModel(dataclasses.replace(cfg, **knob))
        v1, g1 = jax.jit(jax.value_and_grad(lambda p, m=other: loss(p, m)))(params)
        np.testing.assert_allclose(v0, v1, rtol=1e-6)
        for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
            np.testing.assert_allclose(a, b, atol=1e-5)
    # every parameter carries logical axis names; stacked layers lead with "layers"
    boxed = jax.eval_shape(lambda: SiglipVisionModel(cfg).init(jax.random.PRNGKey(0), x))["params"]
    specs = jax.tree.leaves(
        jax.tree.map(lambda p: p.names, boxed, is_leaf=lambda p: hasattr(p, "names")),
        is_leaf=lambda n: isinstance(n, tuple),
    )
    assert len(specs) == len(jax.tree.leaves(params))
    q = boxed["encoder"]["layers"]["self_attn"]["q_proj"]["kernel"]
    assert q.names == ("layers", "embed", "heads", "head_dim")


def test_bad_image_size(hf_siglip):
    _, d = hf_siglip
    cfg, params = _import(d)
    with pytest.raises(ValueError, match="16x16 does not match"):
        jax.eval_shape(
            lambda: SiglipVisionModel(cfg).apply({"params": params}, jnp.zeros((1, 16, 16, 3)))
        )
