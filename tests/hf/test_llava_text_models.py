"""Llava with a Llama (llama3 RoPE) and a Mistral (window 8, shorter than the 15 image tokens plus
prompt) text model, images at feature layers -1 and -2: logits within 1e-4 of transformers,
greedy generation with an image equal to `generate`, import -> export bit-identical."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from mathjax_vl.decoding import SamplingConfig, generate_vlm
from mathjax_vl.hf import registry
from mathjax_vl.hf.tiny import IMAGE_TOKEN_ID, make_tiny_llava
from mathjax_vl.models import registry as model_registry
from mathjax_vl.models.vlm import VLM

CASES = [("llama", "siglip", -1), ("mistral", "clip", -2)]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def llava(request, tmp_path_factory):
    text, vision, layer = request.param
    d = str(tmp_path_factory.mktemp(f"llava_{text}"))
    model = make_tiny_llava(d, vision, feature_layer=layer, text=text)
    return text, d, model


def _prompt(cfg, rng, rows=2, tail=10):
    seq = cfg.image_seq_length
    ids = rng.randint(1, 100, (rows, seq + tail)).astype(np.int32)
    ids[:, 2 : 2 + seq] = IMAGE_TOKEN_ID
    return ids


def test_logits_match_transformers(llava):
    text, path, model = llava
    kind, cfg, params = registry.load_hf(path)
    assert kind == "llava" and model_registry.kind_of(cfg.text) == text
    rng = np.random.RandomState(0)
    ids = _prompt(cfg, rng)
    pixels = rng.randn(2, 3, 16, 16).astype(np.float32)
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids), pixel_values=torch.tensor(pixels)).logits.numpy()
    fwd = jax.jit(lambda p, i, x: VLM(cfg).apply({"params": p}, i, x).logits)
    got = fwd(params, jnp.asarray(ids), jnp.asarray(pixels.transpose(0, 2, 3, 1)))
    assert np.abs(np.asarray(got) - ref).max() <= 1e-4


def test_greedy_generation_with_image_matches_generate(llava):
    _, path, model = llava
    _, cfg, params = registry.load_hf(path)
    rng = np.random.RandomState(1)
    ids = _prompt(cfg, rng, rows=1)
    pixels = rng.randn(1, 3, 16, 16).astype(np.float32)
    mask = np.ones_like(ids)
    with torch.no_grad():
        ref = model.generate(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            pixel_values=torch.tensor(pixels),
            max_new_tokens=32,
            min_new_tokens=32,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )[:, ids.shape[1] :].numpy()
    out = generate_vlm(
        cfg,
        params,
        ids,
        mask,
        pixels.transpose(0, 2, 3, 1),
        SamplingConfig(max_new_tokens=32, pad_token=0),
    )
    np.testing.assert_array_equal(np.asarray(out.tokens), ref)


def test_round_trip_bit_identical(llava, tmp_path):
    _, path, _ = llava
    kind, cfg, params = registry.load_hf(path)
    out = str(tmp_path / "out")
    registry.save_hf(kind, cfg, params, out)
    a = load_file(os.path.join(path, "model.safetensors"))
    b = load_file(os.path.join(out, "model.safetensors"))
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    src_cfg = transformers.AutoConfig.from_pretrained(path)
    got = transformers.AutoConfig.from_pretrained(out)
    assert type(got.text_config) is type(src_cfg.text_config)
    assert got.text_config.to_dict().get("sliding_window") == src_cfg.text_config.to_dict().get(
        "sliding_window"
    )
    assert registry.load_hf(out)[1] == cfg
