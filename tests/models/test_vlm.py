"""VLM (tower -> feature layer -> select -> projector -> scatter -> Qwen2) vs transformers Llava."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch  # test-only dependency: the dev extra pins torch==2.13.0
import transformers  # noqa: F401

from mathjax_vl.hf.llava import load_llava
from mathjax_vl.hf.tiny import IMAGE_TOKEN_ID, make_tiny_llava
from mathjax_vl.models.projectors import ProjectorConfig, SwiGLUProjector
from mathjax_vl.models.vlm import VLM, check_image_tokens, scatter_image_features

_slow = pytest.mark.slow
CASES = [
    ("siglip", -2, "default"),
    ("clip", -1, "full"),
    ("clip", [-3, -1], "default"),  # several layers, concatenated features
    pytest.param("siglip", -1, "full", marks=_slow),
    pytest.param("clip", -2, "full", marks=_slow),
    pytest.param("clip", -1, "default", marks=_slow),
]
CASE_IDS = [
    "siglip-2default",
    "clip-1full",
    "clip-3-1default",
    "siglip-1full",
    "clip-2full",
    "clip-1default",
]


def batch_with_images(seq: int, rng: np.random.RandomState):
    """3 rows: two images, none (with right padding), one image. Returns ids, mask, 3 images."""
    t = 2 * seq + 7
    ids = rng.randint(0, 100, (3, t))
    ids[0, 1 : 1 + seq] = IMAGE_TOKEN_ID
    ids[0, 3 + seq : 3 + 2 * seq] = IMAGE_TOKEN_ID
    ids[2, 4 : 4 + seq] = IMAGE_TOKEN_ID
    mask = np.ones_like(ids)
    mask[1, -4:] = 0
    pixels = rng.randn(3, 3, 16, 16).astype(np.float32)  # NCHW for torch
    return ids, mask, pixels


@pytest.mark.parametrize("vision,layer,strategy", CASES, ids=CASE_IDS)
def test_vlm_logits_match_llava(tmp_path, vision, layer, strategy):
    ref_model = make_tiny_llava(str(tmp_path), vision, layer, strategy, tie=vision == "clip")
    cfg, params = load_llava(str(tmp_path))
    assert cfg.vision_feature_select_strategy == strategy
    ids, mask, pixels = batch_with_images(cfg.image_seq_length, np.random.RandomState(0))
    with torch.no_grad():
        ref = ref_model(
            input_ids=torch.tensor(ids),
            pixel_values=torch.tensor(pixels),
            attention_mask=torch.tensor(mask),
        ).logits.numpy()
    fwd = jax.jit(lambda p, i, x, m: VLM(cfg).apply({"params": p}, i, x, m).logits)
    out = np.asarray(
        fwd(params, jnp.asarray(ids), jnp.asarray(pixels.transpose(0, 2, 3, 1)), jnp.asarray(mask))
    )
    valid = mask.astype(bool)
    assert np.abs(out - ref)[valid].max() <= 1e-4
    # the image features matter: other pixels change the logits at and after image tokens
    out2 = np.asarray(fwd(params, jnp.asarray(ids), jnp.zeros((3, 16, 16, 3)), jnp.asarray(mask)))
    assert np.abs(out2 - out)[0].max() > 1e-3
    np.testing.assert_allclose(out2[1][valid[1]], out[1][valid[1]], atol=1e-6)  # no image row


def test_scatter_matches_masked_scatter():
    rng = np.random.RandomState(0)
    ids = rng.randint(0, 5, (3, 10))
    ids[ids == 4] = 0
    ids[0, 2:4] = 4
    ids[2, 5:9] = 4
    emb = rng.randn(3, 10, 6).astype(np.float32)
    feats = rng.randn(4, 2, 6).astype(np.float32)  # 3 used images of 2 tokens + 1 padding image
    got = np.asarray(scatter_image_features(jnp.asarray(ids), jnp.asarray(emb), feats, 4))
    ref = torch.tensor(emb).masked_scatter(
        torch.tensor(ids == 4)[..., None].expand(3, 10, 6), torch.tensor(feats[:3].reshape(-1, 6))
    )
    np.testing.assert_array_equal(got, ref.numpy())


def test_swiglu_projector_matches_numpy():
    cfg = ProjectorConfig(kind="swiglu", input_dim=8, output_dim=6, hidden_dim=10, act="gelu")
    x = jnp.asarray(np.random.RandomState(1).randn(2, 5, 8), jnp.float32)
    params = SwiGLUProjector(cfg).init(jax.random.PRNGKey(0), x)["params"]
    p = jax.tree.map(
        np.asarray, jax.tree.map(lambda b: b.unbox(), params, is_leaf=lambda b: hasattr(b, "unbox"))
    )
    assert set(p) == {"gate_proj", "up_proj", "down_proj"}
    assert all(set(v) == {"kernel"} for v in p.values())  # bias-free
    from math import erf

    gelu = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2))))
    xn = np.asarray(x, np.float64)
    ref = (gelu(xn @ p["gate_proj"]["kernel"]) * (xn @ p["up_proj"]["kernel"])) @ p["down_proj"][
        "kernel"
    ]
    np.testing.assert_allclose(SwiGLUProjector(cfg).apply({"params": params}, x), ref, atol=1e-5)


def test_image_token_count_mismatch_raises(tmp_path):
    make_tiny_llava(str(tmp_path), "siglip")
    cfg, _ = load_llava(str(tmp_path))
    ids = np.zeros((1, 40), np.int64)
    ids[0, : cfg.image_seq_length - 1] = IMAGE_TOKEN_ID
    with pytest.raises(ValueError, match=r"row 0: .* not a multiple of image_seq_length"):
        check_image_tokens(ids, 1, cfg)
    ids[0, : cfg.image_seq_length] = IMAGE_TOKEN_ID
    with pytest.raises(ValueError, match="1 image placeholders but 0 images"):
        check_image_tokens(ids, 0, cfg)


@pytest.mark.parametrize("vision", ["siglip", pytest.param("clip", marks=pytest.mark.slow)])
def test_greedy_generation_with_images_matches_transformers(tmp_path, vision):
    """32 greedy tokens, batch of 3 prompts of different lengths (left-padded as HF generates),
    rows with 1, 0 and 2 images."""
    from mathjax_vl.decoding import SamplingConfig, generate_vlm

    ref_model = make_tiny_llava(str(tmp_path), vision, -2, "default", seed=3)
    cfg, params = load_llava(str(tmp_path))
    seq, rng = cfg.image_seq_length, np.random.RandomState(5)
    rows = [
        [5, 6] + [IMAGE_TOKEN_ID] * seq + list(rng.randint(1, 100, 4)),
        list(rng.randint(1, 100, 9)),
        [7] + [IMAGE_TOKEN_ID] * seq + [8, 9] + [IMAGE_TOKEN_ID] * seq + [10],
    ]
    t = max(map(len, rows))
    ids = np.zeros((3, t), np.int64)
    mask = np.zeros((3, t), np.int64)
    for i, r in enumerate(rows):  # left padding
        ids[i, t - len(r) :] = r
        mask[i, t - len(r) :] = 1
    pixels = rng.randn(3, 3, 16, 16).astype(np.float32)
    with torch.no_grad():
        ref = ref_model.generate(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            pixel_values=torch.tensor(pixels),
            max_new_tokens=32,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=None,
        )[:, t:].numpy()
    assert ref.shape == (3, 32)
    out = generate_vlm(
        cfg, params, ids, mask, pixels.transpose(0, 2, 3, 1), SamplingConfig(max_new_tokens=32)
    )
    np.testing.assert_array_equal(np.asarray(out.tokens), ref)
    assert len(set(ref[0].tolist())) > 1  # a non-degenerate continuation


@pytest.mark.parametrize("tower", ["siglip", "clip"])
def test_image_preprocessing_matches_hf_processor(tower):
    import transformers as tf
    from PIL import Image

    from mathjax_vl.data.tower_images import preprocess_images
    from mathjax_vl.models.clip import CLIPVisionConfig
    from mathjax_vl.models.siglip import SiglipVisionConfig

    img = Image.fromarray(np.random.RandomState(0).randint(0, 255, (37, 53, 3)).astype(np.uint8))
    if tower == "siglip":
        proc = tf.SiglipImageProcessorPil(size={"height": 24, "width": 24})
        cfg = SiglipVisionConfig(image_size=24)
    else:
        proc = tf.CLIPImageProcessorPil(
            size={"shortest_edge": 24}, crop_size={"height": 24, "width": 24}
        )
        cfg = CLIPVisionConfig(image_size=24)
    ref = proc(images=img, return_tensors="np")["pixel_values"].transpose(0, 2, 3, 1)
    np.testing.assert_allclose(preprocess_images([img], cfg), ref, atol=1e-5)


def test_vlm_params_have_logical_axes_and_precision(tmp_path):
    """Every VLM parameter is boxed with one logical name per dim; the precision knobs reach the
    tower, projector and decoder (abstract init only: no compile)."""
    import dataclasses

    import flax.linen as nn

    make_tiny_llava(str(tmp_path), "clip")
    cfg, _ = load_llava(str(tmp_path), param_dtype="bfloat16", dtype="bfloat16")
    boxed = jax.eval_shape(lambda: VLM(cfg).init(jax.random.PRNGKey(0), jnp.zeros((1, 4), int)))
    leaves = jax.tree.leaves(boxed["params"], is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert leaves and all(isinstance(x, nn.Partitioned) for x in leaves)
    for box in leaves:
        assert len(box.names) == box.value.ndim, box
        assert box.value.dtype == jnp.bfloat16
    layers = boxed["params"]["vision_tower"]["encoder"]["layers"]
    assert layers["mlp"]["fc1"]["kernel"].names == ("layers", "embed", "mlp")
    assert dataclasses.asdict(cfg.projector)["param_dtype"] == "bfloat16"


def test_sharded_vlm_forward_matches_single_device(tmp_path):
    """On a 2x2x2 (data, fsdp, tensor) mesh of fake CPU devices with the default rules, the
    logically annotated VLM gives the same logits as on one device."""
    from mathjax_vl.train.mesh import make_mesh
    from mathjax_vl.train.sharding import DEFAULT_RULES, batch_sharding, tree_shardings
    from mathjax_vl.train.step import mesh_context

    if jax.device_count() < 8:
        pytest.skip("needs 8 (fake) devices")
    make_tiny_llava(str(tmp_path), "siglip")
    cfg, params = load_llava(str(tmp_path))
    ids, mask, pixels = batch_with_images(cfg.image_seq_length, np.random.RandomState(2))
    ids, mask = ids[[0, 1, 2, 1]], mask[[0, 1, 2, 1]]  # batch 4: 2, 0, 1, 0 images
    pixels = np.concatenate([pixels, pixels[:1]]).transpose(0, 2, 3, 1)  # + 1 padding image
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    abstract = jax.eval_shape(lambda: VLM(cfg).init(jax.random.PRNGKey(0), jnp.zeros((1, 4), int)))
    _, shardings = tree_shardings(abstract["params"], mesh, DEFAULT_RULES)
    fwd = lambda p, i, x, m: VLM(cfg).apply({"params": p}, i, x, m).logits
    ref = np.asarray(jax.jit(fwd)(params, ids, pixels, mask))
    with mesh_context(mesh, DEFAULT_RULES):
        sharded = jax.device_put(params, shardings)
        batch = batch_sharding(mesh, 2, DEFAULT_RULES)
        ids_s, mask_s = jax.device_put(ids, batch), jax.device_put(mask, batch)
        out = jax.jit(fwd)(sharded, ids_s, jnp.asarray(pixels), mask_s)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)
