"""CLIP vision + text towers and the dual encoder vs PyTorch transformers (tiny, float32)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch  # test-only dependency: the dev extra pins torch==2.13.0
import transformers

from mathjax_vl.hf.clip import load_clip
from mathjax_vl.models.clip import CLIPDualEncoder, CLIPVisionModel

EOS = 97


@pytest.fixture(scope="module", params=[EOS, 2], ids=["eos_id", "legacy_eos2"])
def hf_clip(request, tmp_path_factory):
    torch.manual_seed(0)
    hcfg = transformers.CLIPConfig(
        text_config=dict(
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=99,
            max_position_embeddings=12,
            eos_token_id=request.param,
            bos_token_id=1,
            pad_token_id=0,
        ),
        vision_config=dict(
            hidden_size=24,
            intermediate_size=40,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=16,
            patch_size=8,
        ),
        projection_dim=16,
    )
    model = transformers.CLIPModel(hcfg).eval()
    d = tmp_path_factory.mktemp("clip")
    model.save_pretrained(d)
    cfg, params = load_clip(str(d))
    return model, cfg, params


def test_clip_dual_encoder_matches_transformers(hf_clip):
    model, cfg, params = hf_clip
    assert cfg.text.eos_token_id in (EOS, 2)
    rs = np.random.RandomState(0)
    x = rs.randn(2, 3, 16, 16).astype(np.float32)
    ids = rs.randint(3, 90, (3, 9))
    ids[0, 5], ids[1, 8], ids[2, 3] = EOS, EOS, EOS  # end-of-text (also the max id: legacy path)
    mask = np.ones_like(ids)
    mask[0, 6:] = 0
    mask[2, 4:] = 0
    with torch.no_grad():
        ref = model(
            input_ids=torch.tensor(ids),
            pixel_values=torch.tensor(x),
            attention_mask=torch.tensor(mask),
            output_hidden_states=True,
        )
    fwd = jax.jit(lambda p, px, i, m: CLIPDualEncoder(cfg).apply({"params": p}, px, i, m))
    out = fwd(params, jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(ids), jnp.asarray(mask))
    np.testing.assert_allclose(out["image_embeds"], ref.image_embeds.numpy(), atol=1e-4)
    np.testing.assert_allclose(out["text_embeds"], ref.text_embeds.numpy(), atol=1e-4)
    np.testing.assert_allclose(out["logits_per_image"], ref.logits_per_image.numpy(), atol=1e-4)
    np.testing.assert_allclose(out["logit_scale"], model.logit_scale.item(), rtol=1e-7)
    # unnormalised projected features (HF get_image_features / get_text_features)
    with torch.no_grad():
        ti = model.get_image_features(pixel_values=torch.tensor(x)).pooler_output.numpy()
    img = jax.jit(
        lambda p, px: CLIPDualEncoder(cfg).apply({"params": p}, px, method="encode_image")
    )(params, jnp.asarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(img, ti, atol=1e-4)
    # vision hidden states: index 0 is after pre_layrnorm, the last is before post_layernorm
    vis = jax.jit(
        lambda p, px: CLIPVisionModel(cfg.vision).apply({"params": p}, px, collect_all=True)
    )(params["vision_model"], jnp.asarray(x.transpose(0, 2, 3, 1)))
    for i, h in enumerate(ref.vision_model_output.hidden_states):
        np.testing.assert_allclose(vis.hidden_states[i], h.numpy(), atol=1e-4)
    np.testing.assert_allclose(
        vis.last_hidden_state, ref.vision_model_output.last_hidden_state.numpy(), atol=1e-4
    )
