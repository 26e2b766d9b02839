"""Llava HF round trip, export of JAX-modified params, and bad-input errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch  # test-only dependency: the dev extra pins torch==2.13.0
import transformers
from safetensors.numpy import load_file, save_file

from mathjax_vl.hf import registry
from mathjax_vl.hf.common import (
    ConversionError,
    MissingWeightsError,
    UnsupportedArchitectureError,
)
from mathjax_vl.hf.llava import load_llava, save_llava
from mathjax_vl.hf.tiny import IMAGE_TOKEN_ID, make_tiny_llava
from mathjax_vl.models.projectors import ProjectorConfig
from mathjax_vl.models.vlm import VLM


@pytest.fixture(scope="module", params=["siglip", "clip"])
def src_dir(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"llava_{request.param}")
    make_tiny_llava(str(d), request.param, tie=request.param == "clip")
    return str(d)


def _tensors(d):
    return load_file(os.path.join(d, "model.safetensors"))


def test_round_trip_bit_identical(src_dir, tmp_path):
    kind, cfg, params = registry.load_hf(src_dir)
    assert kind == "llava"
    out = str(tmp_path / "out")
    save_llava(params, cfg, out, tokenizer_dir=src_dir)
    a, b = _tensors(src_dir), _tensors(out)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    _, info = transformers.LlavaForConditionalGeneration.from_pretrained(
        out, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    ref = json.load(open(os.path.join(src_dir, "config.json")))
    got = json.load(open(os.path.join(out, "config.json")))
    for key in (
        "image_token_index",
        "vision_feature_layer",
        "vision_feature_select_strategy",
        "projector_hidden_act",
        "multimodal_projector_bias",
        "tie_word_embeddings",
    ):
        assert got[key] == ref[key], key
    assert got["vision_config"]["model_type"] == ref["vision_config"]["model_type"]
    assert os.path.exists(os.path.join(out, "preprocessor_config.json"))


def test_modified_params_export_matches_jax_logits(src_dir, tmp_path):
    cfg, params = load_llava(src_dir)
    rng = np.random.RandomState(3)
    params = jax.tree.map(lambda w: w + 0.05 * rng.randn(*w.shape).astype(w.dtype), params)
    out = str(tmp_path / "mod")
    save_llava(params, cfg, out)
    model = transformers.LlavaForConditionalGeneration.from_pretrained(out).eval()
    seq = cfg.image_seq_length
    ids = rng.randint(0, 100, (2, seq + 6))
    ids[0, 2 : 2 + seq] = IMAGE_TOKEN_ID
    pixels = rng.randn(1, 3, 16, 16).astype(np.float32)
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids), pixel_values=torch.tensor(pixels)).logits.numpy()
    fwd = jax.jit(lambda p, i, x: VLM(cfg).apply({"params": p}, i, x).logits)
    got = fwd(params, jnp.asarray(ids), jnp.asarray(pixels.transpose(0, 2, 3, 1)))
    assert np.abs(np.asarray(got) - ref).max() <= 1e-4


def test_older_key_layout_imports(src_dir, tmp_path):
    """transformers 4.5x layout: model.language_model.*, model.vision_tower.*, lm_head.weight."""
    cfg, params = load_llava(src_dir)
    old = {}
    for k, v in _tensors(src_dir).items():
        k = k.replace("language_model.lm_head.", "lm_head.")
        k = k.replace("language_model.model.", "model.language_model.")
        for part in ("vision_tower.", "multi_modal_projector."):
            if k.startswith(part):
                k = "model." + k
        old[k] = v
    d = tmp_path / "old"
    d.mkdir()
    save_file(old, str(d / "model.safetensors"))
    (d / "config.json").write_text(open(os.path.join(src_dir, "config.json")).read())
    cfg2, params2 = load_llava(str(d))
    assert cfg2 == cfg
    jax.tree.map(np.testing.assert_array_equal, params, params2)


def test_swiglu_projector_exports_as_remote_code_llava(src_dir, tmp_path):
    """Math-PUMA's SwiGLU aligner: export writes modeling_llava_swiglu.py + auto_map, which
    transformers runs with trust_remote_code; logits within 1e-4, greedy tokens identical, and
    the directory imports back to the same params."""
    import dataclasses

    import flax.linen as nn

    cfg, params = load_llava(src_dir)
    swiglu = ProjectorConfig(
        kind="swiglu",
        input_dim=cfg.projector.input_dim,
        output_dim=cfg.projector.output_dim,
        hidden_dim=40,
        use_bias=False,
    )
    cfg = dataclasses.replace(cfg, projector=swiglu)
    seq = cfg.image_seq_length
    fresh = VLM(cfg).init(
        jax.random.key(1), jnp.zeros((1, 4), jnp.int32), jnp.zeros((1, 16, 16, 3), jnp.float32)
    )["params"]
    params = {**params, "multi_modal_projector": nn.meta.unbox(fresh)["multi_modal_projector"]}
    out = str(tmp_path / "swiglu")
    files = registry.save_hf("llava", cfg, params, out)
    assert "modeling_llava_swiglu.py" in files
    model, info = transformers.AutoModelForImageTextToText.from_pretrained(
        out, trust_remote_code=True, output_loading_info=True
    )
    assert not any(info.values()), info
    model = model.eval()
    rng = np.random.RandomState(5)
    ids = rng.randint(0, 100, (2, seq + 6))
    ids[0, 2 : 2 + seq] = IMAGE_TOKEN_ID
    ids[1, 5 : 5 + seq] = IMAGE_TOKEN_ID
    pixels = rng.randn(2, 3, 16, 16).astype(np.float32)
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids), pixel_values=torch.tensor(pixels)).logits.numpy()
    fwd = jax.jit(lambda p, i, x: VLM(cfg).apply({"params": p}, i, x).logits)
    got = np.asarray(fwd(params, jnp.asarray(ids), jnp.asarray(pixels.transpose(0, 2, 3, 1))))
    assert np.abs(got - ref).max() < 1e-4, np.abs(got - ref).max()
    # greedy generation: 4 tokens, the same as ours
    from mathjax_vl.decoding import SamplingConfig
    from mathjax_vl.decoding.generate import generate_vlm

    model.generation_config.eos_token_id = None
    with torch.no_grad():
        hf_tokens = model.generate(
            input_ids=torch.tensor(ids), pixel_values=torch.tensor(pixels),
            max_new_tokens=4, do_sample=False,
        )[:, ids.shape[1] :].numpy()  # fmt: skip
    ours = generate_vlm(
        cfg, params, ids, np.ones_like(ids), pixels.transpose(0, 2, 3, 1),
        sampling=SamplingConfig(max_new_tokens=4, pad_token=0),
    )  # fmt: skip
    np.testing.assert_array_equal(np.asarray(ours.tokens), hf_tokens)
    kind, cfg2, params2 = registry.load_hf(out)
    assert kind == "llava" and cfg2.projector == swiglu
    jax.tree.map(np.testing.assert_array_equal, params, params2)


def _copy_dir(src, dst, tensors=None, config=None):
    os.makedirs(dst)
    cfg = json.load(open(os.path.join(src, "config.json")))
    json.dump(config(cfg) if config else cfg, open(os.path.join(dst, "config.json"), "w"))
    if tensors is not None:
        save_file(tensors(_tensors(src)), os.path.join(dst, "model.safetensors"))
    return dst


def test_bad_inputs(src_dir, tmp_path):
    no_weights = _copy_dir(src_dir, str(tmp_path / "nw"))
    with pytest.raises(MissingWeightsError, match="no weights found"):
        registry.load_hf(no_weights)

    def bert(c):
        return {**c, "architectures": ["BertModel"], "model_type": "bert"}

    unsupported = _copy_dir(src_dir, str(tmp_path / "un"), tensors=lambda t: t, config=bert)
    with pytest.raises(UnsupportedArchitectureError, match="BertModel"):
        registry.load_hf(unsupported)

    key = "multi_modal_projector.linear_2.weight"
    missing = _copy_dir(
        src_dir, str(tmp_path / "mk"), tensors=lambda t: {k: v for k, v in t.items() if k != key}
    )
    with pytest.raises(ConversionError, match=key.replace(".", r"\.")):
        registry.load_hf(missing)

    vkey = "vision_tower.encoder.layers.1.mlp.fc1.weight"

    def shrink(t):
        t = dict(t)
        t[vkey] = t[vkey][:-1]
        return t

    bad_shape = _copy_dir(src_dir, str(tmp_path / "bs"), tensors=shrink)
    with pytest.raises(ConversionError, match=r"expected shape \(48, 32\), found \(47, 32\)") as e:
        registry.load_hf(bad_shape)
    assert vkey in str(e.value) and "model.safetensors" in str(e.value)

    extra = _copy_dir(
        src_dir,
        str(tmp_path / "ex"),
        tensors=lambda t: {**t, "vision_tower.extra.weight": np.zeros(2, "f4")},
    )
    with pytest.raises(ConversionError, match=r"unexpected key.*vision_tower\.extra\.weight"):
        registry.load_hf(extra)


def test_config_round_trips(src_dir):
    """VLMConfig <-> LlavaConfig dict and <-> JSON (our checkpoint) are lossless; transformers
    accepts the exported config."""
    from mathjax_vl.hf.llava import config_from_hf, config_to_hf
    from mathjax_vl.models.vlm import VLMConfig

    cfg, _ = load_llava(src_dir)
    assert config_from_hf(config_to_hf(cfg)) == cfg
    assert VLMConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    hf_cfg = transformers.LlavaConfig(**config_to_hf(cfg))
    assert hf_cfg.image_token_id == cfg.image_token_id
    assert (
        hf_cfg.vision_config.model_type
        == json.load(open(os.path.join(src_dir, "config.json")))["vision_config"]["model_type"]
    )
