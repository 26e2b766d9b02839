"""DeepSeek-VL (hybrid and plain) against transformers on tiny random float32 models: logits,
greedy generation, native import -> export, the image processors, and the released layout."""

import functools
import json
import os

import jax
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import load_file, save_file

from mathjax_vl.data.tower_images import preprocess_deepseek
from mathjax_vl.decoding import SamplingConfig
from mathjax_vl.decoding.generate import generate_vlm
from mathjax_vl.hf import registry as hf_registry
from mathjax_vl.hf.common import ConversionError
from mathjax_vl.models import registry
from mathjax_vl.models.sam import SamVisionConfig
from mathjax_vl.models.siglip import SiglipVisionConfig

transformers = pytest.importorskip("transformers")

IMAGE_TOKEN = 5
TEXT = dict(model_type="llama", vocab_size=256, hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=256)  # fmt: skip
# SigLIP 32 px / 8 -> a 4 x 4 grid (16 image tokens); SAM 64 px / 8 -> 8 x 8, windows of 3
# (the grid is zero-padded to 9) and global attention in layer 1
LOW = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
           num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8,
           vision_use_head=False, hidden_act="gelu")  # fmt: skip
HIGH = dict(model_type="sam_vision_model", hidden_size=32, output_channels=8, num_hidden_layers=2,
            num_attention_heads=4, image_size=64, patch_size=8, window_size=3,
            global_attn_indexes=[1], mlp_dim=64)  # fmt: skip


def _random_hf(cls, config, path, seed):
    torch.manual_seed(seed)
    model = cls(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every tensor random (SAM's rel-pos tables and alpha init to zero)
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    model.save_pretrained(path)
    return model


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ds_hybrid"))
    config = transformers.DeepseekVLHybridConfig(
        text_config=TEXT, vision_config=LOW, high_res_vision_config=HIGH,
        image_token_id=IMAGE_TOKEN, tie_word_embeddings=False,
    )  # fmt: skip
    hf = _random_hf(transformers.DeepseekVLHybridForConditionalGeneration, config, path, 0)
    kind, cfg, params = hf_registry.load_hf(path)
    assert kind == "deepseek_vl_hybrid"
    return path, hf, cfg, params


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ds_plain"))
    config = transformers.DeepseekVLConfig(
        text_config=TEXT, vision_config=LOW, image_token_id=IMAGE_TOKEN
    )  # tied LM head (the class default)
    hf = _random_hf(transformers.DeepseekVLForConditionalGeneration, config, path, 1)
    kind, cfg, params = hf_registry.load_hf(path)
    assert kind == "deepseek_vl" and cfg.text.tie_word_embeddings
    return path, hf, cfg, params


def _inputs(cfg, seed=0):
    """Two rows, one image each at different offsets; NCHW for torch, NHWC for us."""
    rng = np.random.default_rng(seed)
    n = cfg.image_seq_length
    ids = rng.integers(10, 256, size=(2, 40))
    ids[0, 2 : 2 + n] = IMAGE_TOKEN
    ids[1, 9 : 9 + n] = IMAGE_TOKEN
    low = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    high = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    return ids, low, high


@functools.partial(jax.jit, static_argnames="cfg")
def _logits(cfg, params, ids, low, high):
    out = registry.build(cfg).apply({"params": params}, ids, low, high_res_pixel_values=high)
    return out.logits


def _ours(cfg, params, ids, low, high):
    high = None if cfg.high_res is None else high.transpose(0, 2, 3, 1)
    return np.asarray(_logits(cfg, params, ids, low.transpose(0, 2, 3, 1), high))


def _theirs(hf, ids, low, high, hybrid=True):
    kw = {"high_res_pixel_values": torch.tensor(high)} if hybrid else {}
    with torch.no_grad():
        return hf(input_ids=torch.tensor(ids), pixel_values=torch.tensor(low), **kw).logits.numpy()


def test_hybrid_logits_match_transformers(hybrid):
    _, hf, cfg, params = hybrid
    assert cfg.image_seq_length == 16 and cfg.high_res.layer_window(0) == 3
    ids, low, high = _inputs(cfg)
    ref = _theirs(hf, ids, low, high)
    np.testing.assert_allclose(_ours(cfg, params, ids, low, high), ref, atol=1e-4, rtol=0)
    # the high-res branch matters: other SAM pixels move HF's logits well beyond the tolerance
    assert np.abs(_theirs(hf, ids, low, high * 0.5) - ref).max() > 1e-2


def test_plain_logits_match_transformers(plain):
    _, hf, cfg, params = plain
    ids, low, high = _inputs(cfg, 1)
    ref = _theirs(hf, ids, low, high, hybrid=False)
    np.testing.assert_allclose(_ours(cfg, params, ids, low, high), ref, atol=1e-4, rtol=0)


def test_hybrid_greedy_generation_is_token_identical(hybrid):
    _, hf, cfg, params = hybrid
    ids, low, high = _inputs(cfg, 2)
    hf.generation_config.eos_token_id = None  # 32 tokens, no early stop on either side
    with torch.no_grad():
        ref = hf.generate(
            input_ids=torch.tensor(ids),
            pixel_values=torch.tensor(low),
            high_res_pixel_values=torch.tensor(high),
            max_new_tokens=32,
            do_sample=False,
        )[:, ids.shape[1] :].numpy()
    out = generate_vlm(
        cfg, params, ids, np.ones_like(ids), low.transpose(0, 2, 3, 1),
        sampling=SamplingConfig(max_new_tokens=32, pad_token=0),
        image_inputs={"high_res_pixel_values": high.transpose(0, 2, 3, 1)},
    )  # fmt: skip
    assert ref.shape == (2, 32)
    np.testing.assert_array_equal(np.asarray(out.tokens), ref)


@pytest.mark.parametrize("which", ["hybrid", "plain"])
def test_native_import_export_is_bit_identical(which, request, tmp_path):
    path, _, cfg, params = request.getfixturevalue(which)
    kind = registry.kind_of(cfg)
    hf_registry.save_hf(kind, cfg, params, str(tmp_path))
    before, after = (
        load_file(f"{path}/model.safetensors"),
        load_file(f"{tmp_path}/model.safetensors"),
    )
    assert sorted(before) == sorted(after)
    for key, value in before.items():
        assert after[key].dtype == value.dtype and np.array_equal(after[key], value), key
    exported = json.load(open(f"{tmp_path}/config.json"))
    original = json.load(open(f"{path}/config.json"))
    assert exported["architectures"] == original["architectures"]
    assert hf_registry.load_hf(str(tmp_path))[1] == cfg


def _images():
    """Landscape, portrait (an odd pad), square and a thin strip (the 14 px floor)."""
    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            for h, w in ((37, 90), (101, 43), (50, 50), (300, 9))]  # fmt: skip


@pytest.mark.parametrize("resample", ["bicubic", "bilinear"])
def test_hybrid_preprocessing_equals_the_hf_processor(hybrid, resample):
    import dataclasses

    from transformers.models.deepseek_vl_hybrid.image_processing_pil_deepseek_vl_hybrid import (
        DeepseekVLHybridImageProcessorPil,
    )

    cfg = dataclasses.replace(hybrid[2], low_res_resample=resample)
    proc = DeepseekVLHybridImageProcessorPil(
        size={"height": 32, "width": 32}, high_res_size={"height": 64, "width": 64},
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
        resample={"bicubic": 3, "bilinear": 2}[resample],
    )  # fmt: skip
    images = _images()
    ref = proc(images, return_tensors="np")
    ours = preprocess_deepseek(images, cfg)
    np.testing.assert_array_equal(ours["pixel_values"], ref["pixel_values"].transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(
        ours["high_res_pixel_values"], ref["high_res_pixel_values"].transpose(0, 2, 3, 1)
    )


def test_plain_preprocessing_equals_the_hf_processor(plain):
    from transformers.models.deepseek_vl.image_processing_pil_deepseek_vl import (
        DeepseekVLImageProcessorPil,
    )

    cfg = plain[2]
    proc = DeepseekVLImageProcessorPil(
        size={"height": 32, "width": 32}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    )
    images = _images()
    ours = preprocess_deepseek(images, cfg)
    ref = proc(images, return_tensors="np")["pixel_values"].transpose(0, 2, 3, 1)
    assert set(ours) == {"pixel_values"}
    np.testing.assert_array_equal(ours["pixel_values"], ref)


# ---- the released layout (DeepSeek-VL's MultiModalityCausalLM; Math-PUMA's DeepSeek model) ----

# native name prefix -> released name prefix. Released names are those of DeepSeek-VL's modules
# (deepseek_vl/models/{clip_encoder,sam,siglip_vit,projector,modeling_vlm}.py), the same table
# transformers' convert_deepseek_vl_hybrid_weights_to_hf.py inverts.
SAM_N, SAM_R = (
    "model.high_res_vision_model.vision_encoder.",
    "vision_model.vision_tower_high.vision_tower.",
)
SIG_N, SIG_R = "model.vision_model.", "vision_model.vision_tower_low.vision_tower."
RENAMES = [
    # SAM-B (HybridVisionTower.vision_tower_high = CLIPVisionTower(create_sam_vit(...)))
    (SAM_N + "patch_embed.projection.", SAM_R + "patch_embed.proj."),
    (SAM_N + "neck.conv1.", SAM_R + "neck.0."),  # neck = Sequential(conv, LN2d, conv, LN2d)
    (SAM_N + "neck.layer_norm1.", SAM_R + "neck.1."),
    (SAM_N + "neck.conv2.", SAM_R + "neck.2."),
    (SAM_N + "neck.layer_norm2.", SAM_R + "neck.3."),
    (SAM_N + "pos_embed", SAM_R + "pos_embed"),
    ("model.high_res_vision_neck.conv1.", SAM_R + "neck_hd.0."),  # sam.py's neck_hd copy
    ("model.high_res_vision_neck.layer_norm1.", SAM_R + "neck_hd.1."),
    ("model.high_res_vision_neck.conv2.", SAM_R + "neck_hd.2."),
    ("model.high_res_vision_neck.layer_norm2.", SAM_R + "neck_hd.3."),
    ("model.high_res_vision_proj.conv1.", SAM_R + "downsamples.0."),  # sam.py downsamples
    ("model.high_res_vision_proj.conv2.", SAM_R + "downsamples.1."),
    ("model.high_res_vision_alpha", SAM_R + "hd_alpha_downsamples"),
    # SigLIP-L (vision_tower_low = timm VisionTransformer from siglip_vit.py)
    (SIG_N + "embeddings.patch_embedding.", SIG_R + "patch_embed.proj."),
    (SIG_N + "post_layernorm.", SIG_R + "norm."),
    # MlpProjector "low_high_hybrid_split_mlp_gelu": high_up_proj, low_up_proj, [GELU, Linear]
    ("model.aligner.high_res_vision_proj.", "aligner.high_up_proj."),
    ("model.aligner.vision_proj.", "aligner.low_up_proj."),
    ("model.aligner.proj.", "aligner.layers.1."),
    # LlamaForCausalLM as `language_model`
    ("model.language_model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
]


def _released_name(key):
    import re

    for native, released in RENAMES:
        if key.startswith(native):
            return released + key[len(native) :]
    m = re.match(r"model\.high_res_vision_model\.vision_encoder\.layers\.(\d+)\.(.*)", key)
    if m:  # SAM blocks.{i}: norm1/norm2, attn.{qkv,proj,rel_pos_h,rel_pos_w}, mlp.lin1/lin2
        return f"{SAM_R}blocks.{m[1]}." + m[2].replace("layer_norm", "norm")
    m = re.match(r"model\.vision_model\.encoder\.layers\.(\d+)\.(.*)", key)
    if m:  # timm Block: norm1/norm2, attn.proj, mlp.fc1/fc2 (q/k/v fused below)
        rest = m[2].replace("layer_norm", "norm").replace("self_attn.out_proj", "attn.proj")
        return f"{SIG_R}blocks.{m[1]}.{rest}"
    raise AssertionError(f"no released name for {key}")


def _released_dir(native_path, out):
    state = load_file(f"{native_path}/model.safetensors")
    released = {}
    for key, value in state.items():
        if key.startswith(SIG_N) and any(f".self_attn.{p}_proj." in key for p in "qkv"):
            continue  # fused into attn.qkv below
        if key == SIG_N + "embeddings.position_embedding.weight":
            released[SIG_R + "pos_embed"] = value[None]  # timm keeps [1, N, D]
            continue
        released[_released_name(key)] = value
    for i in range(LOW["num_hidden_layers"]):  # timm Attention: one qkv Linear, rows q | k | v
        for kind in ("weight", "bias"):
            parts = [state[f"{SIG_N}encoder.layers.{i}.self_attn.{p}_proj.{kind}"] for p in "qkv"]
            released[f"{SIG_R}blocks.{i}.attn.qkv.{kind}"] = np.concatenate(parts, 0)
    rng = np.random.default_rng(0)
    d = LOW["hidden_size"]
    # tensors the released checkpoints carry but the model never applies: timm's MAP head
    # (global_pool="map", run only without ignore_head) and HybridVisionTower's two LayerNorms
    for key, shape in (
        ("attn_pool.latent", (1, 1, d)),
        ("attn_pool.q.weight", (d, d)),
        ("attn_pool.kv.weight", (2 * d, d)),
        ("attn_pool.norm.weight", (d,)),
    ):
        released[SIG_R + key] = rng.standard_normal(shape).astype(np.float32)
    for key in ("vision_model.high_layer_norm.weight", "vision_model.low_layer_norm.bias"):
        released[key] = rng.standard_normal((1024,)).astype(np.float32)
    os.makedirs(out, exist_ok=True)
    save_file(released, f"{out}/model.safetensors")
    # config.json fields of deepseek-ai/deepseek-vl-7b-chat (MultiModalityConfig), sizes tiny:
    # the towers' widths come from model_name (passed as `towers=` below), image sizes from here
    config = {
        "architectures": ["MultiModalityCausalLM"],
        "model_type": "multi_modality",
        "torch_dtype": "float32",
        "transformers_version": "4.38.2",
        "aligner_config": {
            "cls": "MlpProjector", "model_type": "aligner",
            "params": {"depth": 2, "input_dim": d, "n_embed": TEXT["hidden_size"],
                       "projector_type": "low_high_hybrid_split_mlp_gelu"},
        },
        "vision_config": {
            "cls": "HybridVisionTower", "model_type": "vision",
            "params": {
                "concat_type": "tuple", "freeze_high": True, "freeze_low": True,
                "high_res_cfg": {"image_size": 64, "model_name": "sam_b_downsample",
                                 "output_dim": 4 * HIGH["output_channels"],
                                 "pixel_mean": [0.48145466, 0.4578275, 0.40821073],
                                 "pixel_std": [0.26862954, 0.26130258, 0.27577711],
                                 "select_feature": "same", "select_layer": -1},
                "low_res_cfg": {"image_size": 32, "model_name": "siglip_large_patch16_384",
                                "output_dim": d, "pixel_mean": [0.5, 0.5, 0.5],
                                "pixel_std": [0.5, 0.5, 0.5], "select_feature": "same",
                                "select_layer": -1},
            },
        },
        "language_config": {k: v for k, v in TEXT.items()} | {"torch_dtype": "float32"},
    }  # fmt: skip
    with open(f"{out}/config.json", "w") as f:
        json.dump(config, f)
    return config


TINY_TOWERS = {
    "siglip_large_patch16_384": SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, image_size=32,
        patch_size=8, hidden_act="gelu", use_head=False,
    ),
    "sam_b_downsample": SamVisionConfig(
        hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, image_size=64,
        patch_size=8, output_channels=8, window_size=3, global_attn_indexes=(1,),
    ),
}  # fmt: skip


def test_released_layout_gives_the_native_logits(hybrid, tmp_path):
    path, _, cfg, params = hybrid
    _released_dir(path, str(tmp_path))
    kind, rcfg, rparams = hf_registry.load_hf(str(tmp_path), towers=TINY_TOWERS, image_token_id=5)
    assert kind == "deepseek_vl_hybrid" and rcfg.low_res_resample == "bilinear"
    flat = lambda p: {"/".join(map(str, k)): v for k, v in jax.tree_util.tree_leaves_with_path(p)}
    a, b = flat(params), flat(rparams)
    assert sorted(a) == sorted(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    # same tensors, same model: the config differs only in the LM head's tie and the low-res
    # resample filter (preprocessing), so the released import's logits are the native ones
    ids, low, high = _inputs(cfg)
    ref = _ours(cfg, params, ids, low, high)  # compiled once, shared with the parity test
    np.testing.assert_array_equal(_ours(rcfg, rparams, ids, low, high), ref)


def test_released_layout_bad_input_is_named(hybrid, tmp_path):
    config = _released_dir(hybrid[0], str(tmp_path))
    config["aligner_config"]["params"]["projector_type"] = "linear"
    json.dump(config, open(f"{tmp_path}/config.json", "w"))
    with pytest.raises(ConversionError, match="projector_type 'linear'"):
        hf_registry.load_hf(str(tmp_path), towers=TINY_TOWERS)
    config["aligner_config"]["params"]["projector_type"] = "low_high_hybrid_split_mlp_gelu"
    json.dump(config, open(f"{tmp_path}/config.json", "w"))
    with pytest.raises(ConversionError, match=r"aligner_config.params.input_dim 32 != 1024"):
        hf_registry.load_hf(str(tmp_path))  # the published SigLIP-L width does not fit
