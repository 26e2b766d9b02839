"""Math-PUMA's released Qwen2vlm layout: a tiny dir with exactly the released key names and
config.json fields, built from our native SwiGLU VLM by renaming, imports to the same params and
logits."""

import dataclasses
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from mathjax_vl.hf import registry
from mathjax_vl.hf.common import ConversionError
from mathjax_vl.hf.tiny import IMAGE_TOKEN_ID, make_tiny_llava
from mathjax_vl.models.projectors import ProjectorConfig
from mathjax_vl.models.vlm import VLM

pytest.importorskip("transformers")

# our export's module names -> the released names (Math-PUMA qwen2vlm/modeling_qwen2vlm.py):
RENAMES = [
    # self.vision_model = AutoModel.from_config(SiglipVisionConfig): a transformers-4.x
    # SiglipVisionModel, whose own submodule is also `vision_model`
    ("model.vision_tower.", "vision_model.vision_model."),
    # self.aligner = Qwen2vlmAligner: gate_proj / up_proj / down_proj, bias=False
    ("model.multi_modal_projector.", "aligner."),
    # self.language_model = AutoModelForCausalLM.from_config(text_config): Qwen2ForCausalLM
    ("model.language_model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
]


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    src = str(tmp_path_factory.mktemp("llava"))
    make_tiny_llava(src, "siglip")
    _, cfg, params = registry.load_hf(src)
    p = cfg.projector
    swiglu = ProjectorConfig(kind="swiglu", input_dim=p.input_dim, output_dim=p.output_dim,
                             hidden_dim=p.output_dim, use_bias=False)  # fmt: skip
    cfg = dataclasses.replace(cfg, projector=swiglu)
    fresh = VLM(cfg).init(
        jax.random.key(2), jnp.zeros((1, 4), jnp.int32), jnp.zeros((1, 16, 16, 3), jnp.float32)
    )["params"]
    params = {**params, "multi_modal_projector": nn.meta.unbox(fresh)["multi_modal_projector"]}
    out = str(tmp_path_factory.mktemp("native"))
    registry.save_hf("llava", cfg, params, out)
    return out, cfg, params


def _released(native_dir, out):
    state = load_file(f"{native_dir}/model.safetensors")
    renamed = {}
    for key, value in state.items():
        new = next(r + key[len(n) :] for n, r in RENAMES if key.startswith(n))
        renamed[new] = value
    save_file(renamed, f"{out}/model.safetensors")
    hf = json.load(open(f"{native_dir}/config.json"))
    vision = dict(hf["vision_config"])
    vision.pop("vision_use_head", None)  # transformers 4.x SiglipVisionConfig had no such field
    # Qwen2vlmConfig.to_dict(): its own fields + PretrainedConfig's (tie default True)
    config = {
        "architectures": ["Qwen2vlmForConditionalGeneration"],
        "model_type": "qwen2vlm",
        "ignore_index": -100,
        "image_token_index": IMAGE_TOKEN_ID,
        "projector_hidden_act": "gelu",
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": "4.42.4",
        "vision_config": vision,
        "text_config": hf["text_config"],
    }
    json.dump(config, open(f"{out}/config.json", "w"))
    return config


def test_released_layout_gives_the_native_logits(native, tmp_path):
    native_dir, cfg, params = native
    _released(native_dir, str(tmp_path))
    kind, rcfg, rparams = registry.load_hf(str(tmp_path))
    assert kind == "llava" and rcfg.projector.kind == "swiglu"
    assert rcfg.text.tie_word_embeddings == cfg.text.tie_word_embeddings
    jax.tree.map(np.testing.assert_array_equal, params, rparams)
    rng = np.random.RandomState(0)
    seq = cfg.image_seq_length
    ids = rng.randint(0, 100, (1, seq + 5))
    ids[0, 1 : 1 + seq] = IMAGE_TOKEN_ID
    pixels = jnp.asarray(rng.randn(1, 16, 16, 3).astype(np.float32))
    a = VLM(cfg).apply({"params": params}, jnp.asarray(ids), pixels).logits
    b = VLM(rcfg).apply({"params": rparams}, jnp.asarray(ids), pixels).logits
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_released_layout_bad_feature_layer_is_named(native, tmp_path):
    config = _released(native[0], str(tmp_path))
    config["vision_feature_layer"] = [-2, -1]
    json.dump(config, open(f"{tmp_path}/config.json", "w"))
    with pytest.raises(ConversionError, match=r"vision_feature_layer \[-2, -1\] unsupported"):
        registry.load_hf(str(tmp_path))
