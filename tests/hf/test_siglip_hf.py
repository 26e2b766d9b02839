"""SigLIP HF import/export: SiglipVisionModel round trip, SiglipModel vision half, bad input."""

import os

import numpy as np
import pytest
import torch  # test-only dependency: the dev extra pins torch==2.13.0
import transformers
from safetensors.numpy import load_file, save_file

from mathjax_vl.hf import registry
from mathjax_vl.hf.common import ConversionError
from mathjax_vl.hf.siglip import load_siglip_vision

VISION = dict(
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=16,
    patch_size=8,
)


@pytest.fixture(scope="module")
def vision_dir(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("siglip_vision")
    transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**VISION)).save_pretrained(d)
    return str(d)


def test_vision_round_trip_bit_identical(vision_dir, tmp_path):
    kind, cfg, params = registry.load_hf(vision_dir)
    assert kind == "siglip_vision" and cfg.use_head
    registry.save_hf(kind, cfg, params, str(tmp_path))
    a = load_file(os.path.join(vision_dir, "model.safetensors"))
    b = load_file(str(tmp_path / "model.safetensors"))
    assert sorted(a) == sorted(b)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    model_cls = transformers.SiglipVisionModel
    _, info = model_cls.from_pretrained(str(tmp_path), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info


def test_siglip_model_vision_half(tmp_path):
    torch.manual_seed(1)
    hcfg = transformers.SiglipConfig(
        vision_config=VISION,
        text_config=dict(
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=1,
            num_attention_heads=4,
            vocab_size=50,
            max_position_embeddings=8,
        ),
    )
    full = transformers.SiglipModel(hcfg)
    full.save_pretrained(tmp_path)
    _, params, ignored = load_siglip_vision(str(tmp_path))
    # the text tower and logit scale/bias are reported, not silently dropped
    assert ignored and all(k.startswith(("text_model.", "logit_")) for k in ignored)
    assert "logit_scale" in ignored
    w = full.vision_model.embeddings.position_embedding.weight.detach().numpy()
    np.testing.assert_array_equal(params["position_embedding"], w)


def test_siglip_model_parity_and_round_trip(tmp_path):
    """Full SiglipModel (vision + bidirectional text + logit scale/bias): embeddings and logits
    vs transformers, then HF -> checkpoint -> HF bit-identical."""
    import jax
    import jax.numpy as jnp
    from safetensors.numpy import load_file

    from mathjax_vl.models.siglip import SiglipDualEncoder

    torch.manual_seed(2)
    hcfg = transformers.SiglipConfig(
        vision_config=VISION,
        text_config=dict(
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=50,
            max_position_embeddings=8,
            projection_size=32,
        ),
    )
    model = transformers.SiglipModel(hcfg).eval()
    src = str(tmp_path / "src")
    model.save_pretrained(src)
    kind, cfg, params = registry.load_hf(src)
    assert kind == "siglip"
    rng = np.random.RandomState(0)
    x = rng.randn(2, 3, 16, 16).astype(np.float32)
    ids = rng.randint(2, 50, (3, 8))
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids), pixel_values=torch.tensor(x))
    out = jax.jit(lambda p, px, i: SiglipDualEncoder(cfg).apply({"params": p}, px, i))(
        params, jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(ids)
    )
    np.testing.assert_allclose(out["image_embeds"], ref.image_embeds.numpy(), atol=1e-4)
    np.testing.assert_allclose(out["text_embeds"], ref.text_embeds.numpy(), atol=1e-4)
    np.testing.assert_allclose(out["logits_per_image"], ref.logits_per_image.numpy(), atol=1e-4)
    registry.save_checkpoint(str(tmp_path / "ckpt"), kind, cfg, params)
    kind2, cfg2, params2 = registry.load_checkpoint(str(tmp_path / "ckpt"))
    assert (kind2, cfg2) == (kind, cfg)
    registry.save_hf(kind2, cfg2, params2, str(tmp_path / "out"))
    a = load_file(os.path.join(src, "model.safetensors"))
    b = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    _, info = transformers.SiglipModel.from_pretrained(
        str(tmp_path / "out"), output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info


def test_fused_in_proj_shape_mismatch(vision_dir, tmp_path):
    t = load_file(os.path.join(vision_dir, "model.safetensors"))
    t["head.attention.in_proj_weight"] = t["head.attention.in_proj_weight"][:-3]
    save_file(t, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(open(os.path.join(vision_dir, "config.json")).read())
    with pytest.raises(ConversionError, match=r"in_proj_weight.*expected shape \(96, 32\), found"):
        load_siglip_vision(str(tmp_path))
