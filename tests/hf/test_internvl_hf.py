"""InternVL (InternViT + pixel shuffle + LN/MLP projector) with a Qwen2 and a Llama text model:
two images of different aspect ratios, tiled by our preprocessing into 3 and 1 tiles, give logits
within 1e-4 of transformers' InternVLForConditionalGeneration; greedy generation of 32 tokens
equals `generate`; import -> export is bit-identical. A q/k-norm + RMSNorm tower matches too."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from mathjax_vl.data.image_processing import ImageProcessingConfig, process_image_tiles
from mathjax_vl.decoding import SamplingConfig, generate_vlm
from mathjax_vl.hf import registry
from mathjax_vl.hf.tiny import INTERNVL_IMAGE_TOKEN_ID, make_tiny_internvl
from mathjax_vl.models import registry as model_registry

CASES = [("qwen2", False), ("llama", False), ("qwen2", True)]  # (text, qk_norm + rms_norm tower)


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}{'-qknorm' if c[1] else ''}")
def internvl(request, tmp_path_factory):
    text, qk = request.param
    d = str(tmp_path_factory.mktemp(f"internvl_{text}"))
    model = make_tiny_internvl(
        d, text, qk_norm=qk, norm_type="rms_norm" if qk else "layer_norm", tie=qk
    )
    _kind, cfg, params = registry.load_hf(d)
    return text, qk, d, model, cfg, params


def _tiles(cfg):
    """Two images, 28 x 56 (wide: 2 x 1 grid + thumbnail = 3 tiles) and 30 x 28 (1 tile)."""
    proc = ImageProcessingConfig.for_tower(cfg.vision, max_tiles=4)
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (28, 56, 3), dtype=np.uint8)
    square = rng.integers(0, 256, (30, 28, 3), dtype=np.uint8)
    a, b = process_image_tiles(wide, proc), process_image_tiles(square, proc)
    assert (len(a), len(b)) == (3, 1)
    return a, b


def _row(cfg, tiles, rng, head=3, tail=8):
    """[text][image runs of tiles x image_seq_length tokens, with text between][text]."""
    ids = list(rng.randint(1, 100, head))
    for n in tiles:
        ids += [INTERNVL_IMAGE_TOKEN_ID] * (n * cfg.image_seq_length) + list(rng.randint(1, 100, 2))
    return ids + list(rng.randint(1, 100, tail))


def test_logits_match_transformers(internvl):
    text, _, _, model, cfg, params = internvl
    assert model_registry.kind_of(cfg) == "internvl" and model_registry.kind_of(cfg.text) == text
    assert cfg.image_seq_length == 4  # 28 px / 7 px patches = 4 x 4 -> pixel shuffle 2 x 2
    a, b = _tiles(cfg)
    rng = np.random.RandomState(0)
    rows = [_row(cfg, (3, 1), rng), _row(cfg, (1,), rng)]
    width = max(map(len, rows))
    ids = np.array([r + [5] * (width - len(r)) for r in rows], np.int32)
    pixels = np.concatenate([a, b, b])  # row 0: wide, square; row 1: square -> 5 tiles
    with torch.no_grad():
        ref = model(
            input_ids=torch.tensor(ids), pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2))
        ).logits.numpy()
    fwd = jax.jit(lambda p, i, x: model_registry.build(cfg).apply({"params": p}, i, x).logits)
    got = np.asarray(fwd(params, jnp.asarray(ids), jnp.asarray(pixels)))
    assert np.abs(got - ref).max() <= 1e-4
    # the images matter: other pixels change the logits at and after the image tokens
    other = np.asarray(fwd(params, jnp.asarray(ids), jnp.asarray(pixels[::-1].copy())))
    assert np.abs(other - got).max() > 1e-3


def test_greedy_generation_matches_generate(internvl):
    _, qk, _, model, cfg, params = internvl
    if qk:
        pytest.skip("generation is covered by the two text models")
    a, b = _tiles(cfg)
    ids = np.array([_row(cfg, (3, 1), np.random.RandomState(1))], np.int32)
    pixels = np.concatenate([a, b])
    mask = np.ones_like(ids)
    with torch.no_grad():
        ref = model.generate(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2)),
            max_new_tokens=32,
            min_new_tokens=32,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )[:, ids.shape[1] :].numpy()
    out = generate_vlm(
        cfg, params, ids, mask, pixels, SamplingConfig(max_new_tokens=32, pad_token=0)
    )
    np.testing.assert_array_equal(np.asarray(out.tokens), ref)


def test_round_trip_bit_identical(internvl, tmp_path):
    _, _, path, _, cfg, params = internvl
    out = str(tmp_path / "out")
    registry.save_hf("internvl", cfg, params, out)
    a = load_file(os.path.join(path, "model.safetensors"))
    b = load_file(os.path.join(out, "model.safetensors"))
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    src = transformers.AutoConfig.from_pretrained(path)
    got = transformers.AutoConfig.from_pretrained(out)
    assert type(got.text_config) is type(src.text_config)
    assert got.vision_config.use_qk_norm == src.vision_config.use_qk_norm
    assert registry.load_hf(out)[1] == cfg
    pre = transformers.AutoImageProcessor.from_pretrained(out)
    assert pre.crop_to_patches and pre.size["height"] == cfg.vision.image_size
