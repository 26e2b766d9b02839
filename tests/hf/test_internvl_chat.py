"""The released `internvl_chat` layout (InternVL2 / MathCoder-VL / FigCodifier): tiny dirs written
here from native InternVLForConditionalGeneration models by renaming every tensor to the released
name (and fusing q/k/v the way the released code splits them) import to the same parameters and
logits as the native dirs, with an InternLM2 and a Qwen2 language model; the converter's output
loads in transformers with the original's logits; a wqkv that does not split into the configured
heads is an error naming the key and the numbers."""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import traverse_util
from safetensors.numpy import load_file, save_file

from mathjax_vl.hf import registry
from mathjax_vl.hf.common import ConversionError
from mathjax_vl.hf.internvl_chat import convert_to_native
from mathjax_vl.hf.tiny import INTERNVL_IMAGE_TOKEN_ID, make_tiny_internvl
from mathjax_vl.models import registry as model_registry

# Native (transformers 5 save_pretrained) -> released names. Sources of the released names:
#   modeling_intern_vit.py  InternVisionEmbeddings (class_embedding, patch_embedding,
#                           position_embedding), InternVisionEncoder.layers,
#                           InternVisionEncoderLayer (attn, mlp.fc1/fc2, norm1, norm2, ls1, ls2),
#                           InternAttention (qkv, proj, q_norm, k_norm)
#   modeling_internvl_chat.py  InternVLChatModel (vision_model, language_model,
#                           mlp1 = Sequential(LayerNorm, Linear, GELU, Linear) -> 0, 1, 3)
#   modeling_internlm2.py   InternLM2ForCausalLM (model.tok_embeddings, model.layers.{i}.attention.
#                           wqkv / wo, feed_forward.w1 (gate) / w3 (up) / w2 (down),
#                           attention_norm, ffn_norm, model.norm, output)
VISION = [
    (r"^vision_tower\.", "vision_model."),
    (r"\.embeddings\.cls_token$", ".embeddings.class_embedding"),
    (r"\.embeddings\.position_embeddings$", ".embeddings.position_embedding"),
    (r"\.embeddings\.patch_embeddings\.projection\.", ".embeddings.patch_embedding."),
    (r"\.encoder\.layer\.", ".encoder.layers."),
    (r"\.attention\.projection_layer\.", ".attn.proj."),
    (r"\.attention\.(q|k)_norm\.", r".attn.\1_norm."),
    (r"\.layernorm_before\.", ".norm1."),
    (r"\.layernorm_after\.", ".norm2."),
    (r"\.lambda_(\d)$", r".ls\1"),
]
PROJECTOR = [
    (r"^multi_modal_projector\.layer_norm\.", "mlp1.0."),
    (r"^multi_modal_projector\.linear_1\.", "mlp1.1."),
    (r"^multi_modal_projector\.linear_2\.", "mlp1.3."),
]
INTERNLM2 = [
    (r"\.embed_tokens\.", ".tok_embeddings."),
    (r"^language_model\.lm_head\.", "language_model.output."),
    (r"\.self_attn\.o_proj\.", ".attention.wo."),
    (r"\.mlp\.gate_proj\.", ".feed_forward.w1."),
    (r"\.mlp\.up_proj\.", ".feed_forward.w3."),
    (r"\.mlp\.down_proj\.", ".feed_forward.w2."),
    (r"\.input_layernorm\.", ".attention_norm."),
    (r"\.post_attention_layernorm\.", ".ffn_norm."),
]


def _sub(key, rules):
    for a, b in rules:
        key = re.sub(a, b, key)
    return key


def released_state(native, internlm2, heads, kv, head_dim):
    """The native state dict under the released names, q/k/v fused: InternViT's qkv is
    cat(q, k, v) on rows; InternLM2Attention reads wqkv as '(h gs d) z -> h gs d z' with
    gs = heads / kv + 2 (per kv head: its query heads, then k, then v)."""
    out = {}
    for key, w in native.items():
        if ".attention.q_proj." in key or ".attention.k_proj." in key:
            continue
        if ".attention.v_proj." in key:  # vision: fuse with q and k
            q, k = (native[key.replace(".v_proj.", f".{n}.")] for n in ("q_proj", "k_proj"))
            out[_sub(key.replace(".attention.v_proj.", ".attn.qkv."), VISION)] = np.concatenate(
                [q, k, w]
            )
            continue
        if key.startswith("vision_tower."):
            out[_sub(key, VISION)] = w
        elif key.startswith("multi_modal_projector."):
            out[_sub(key, PROJECTOR)] = w
        elif internlm2 and ".self_attn.q_proj." in key:
            q = w.reshape(kv, heads // kv, head_dim, -1)
            k = native[key.replace("q_proj", "k_proj")].reshape(kv, 1, head_dim, -1)
            v = native[key.replace("q_proj", "v_proj")].reshape(kv, 1, head_dim, -1)
            fused = np.concatenate([q, k, v], axis=1).reshape((heads + 2 * kv) * head_dim, -1)
            out[key.replace(".self_attn.q_proj.", ".attention.wqkv.")] = fused
        elif internlm2 and (".self_attn.k_proj." in key or ".self_attn.v_proj." in key):
            continue
        else:
            out[_sub(key, INTERNLM2) if internlm2 else key] = w
    return out


def released_config(native_cfg, internlm2):
    """config.json fields of InternVLChatConfig / InternVisionConfig / InternLM2Config
    (configuration_internvl_chat.py, configuration_intern_vit.py, configuration_internlm2.py)."""
    v, t = native_cfg["vision_config"], native_cfg["text_config"]
    vision = {
        "architectures": ["InternVisionModel"],
        "model_type": "intern_vit_6b",
        "hidden_size": v["hidden_size"],
        "intermediate_size": v["intermediate_size"],
        "num_hidden_layers": v["num_hidden_layers"],
        "num_attention_heads": v["num_attention_heads"],
        "image_size": v["image_size"][0],
        "patch_size": v["patch_size"][0],
        "num_channels": 3,
        "qkv_bias": v["attention_bias"],
        "qk_normalization": v["use_qk_norm"],
        "norm_type": v["norm_type"],
        "layer_norm_eps": v["layer_norm_eps"],
        "hidden_act": "gelu",
        "initializer_factor": 1.0,
        "drop_path_rate": 0.0,
        "use_flash_attn": False,
    }
    llm = {
        "vocab_size": t["vocab_size"],
        "hidden_size": t["hidden_size"],
        "intermediate_size": t["intermediate_size"],
        "num_hidden_layers": t["num_hidden_layers"],
        "num_attention_heads": t["num_attention_heads"],
        "num_key_value_heads": t["num_key_value_heads"],
        "max_position_embeddings": t["max_position_embeddings"],
        "rms_norm_eps": t["rms_norm_eps"],
        "rope_theta": t["rope_parameters"]["rope_theta"],
        "tie_word_embeddings": False,
        "hidden_act": "silu",
    }
    if internlm2:
        llm |= {"architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2",
                "bias": False, "rope_scaling": {"type": "dynamic", "factor": 2.0},
                "attn_implementation": "eager"}  # fmt: skip
    else:
        llm |= {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}
    return {
        "architectures": ["InternVLChatModel"],
        "model_type": "internvl_chat",
        "downsample_ratio": 0.5,
        "dynamic_image_size": True,
        "force_image_size": v["image_size"][0],
        "max_dynamic_patch": 6,
        "min_dynamic_patch": 1,
        "use_thumbnail": True,
        "ps_version": "v2",
        "select_layer": -1,
        "template": "internlm2-chat" if internlm2 else "Hermes-2",
        "use_backbone_lora": 0,
        "use_llm_lora": 0,
        "vision_config": vision,
        "llm_config": llm,
    }


CASES = [("llama", True), ("qwen2", False)]  # (native text model, released as InternLM2)


@pytest.fixture(scope="module", params=CASES, ids=["internlm2", "qwen2"])
def dirs(request, tmp_path_factory):
    text, internlm2 = request.param
    root = tmp_path_factory.mktemp(f"chat_{text}")
    native = str(root / "native")
    over = {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}} if internlm2 else {}
    model = make_tiny_internvl(native, text, text_overrides=over)
    hf_cfg = json.load(open(os.path.join(native, "config.json")))
    t = hf_cfg["text_config"]
    heads, kv = t["num_attention_heads"], t["num_key_value_heads"]
    state = released_state(
        load_file(os.path.join(native, "model.safetensors")), internlm2, heads, kv,
        t["hidden_size"] // heads,
    )  # fmt: skip
    chat = str(root / "chat")
    os.makedirs(chat)
    save_file(state, os.path.join(chat, "model.safetensors"))
    json.dump(released_config(hf_cfg, internlm2), open(os.path.join(chat, "config.json"), "w"))
    # the id of <IMG_CONTEXT> comes from the tokenizer files, as in the released dirs
    json.dump({"<IMG_CONTEXT>": INTERNVL_IMAGE_TOKEN_ID}, open(f"{chat}/added_tokens.json", "w"))
    return native, chat, model, internlm2


def _logits(cfg, params, seed=0):
    rng = np.random.RandomState(seed)
    n = cfg.image_seq_length
    ids = rng.randint(1, 100, (1, 3 * n + 9)).astype(np.int32)
    ids[0, 2 : 2 + 3 * n] = INTERNVL_IMAGE_TOKEN_ID
    pix = rng.randn(3, cfg.vision.image_size, cfg.vision.image_size, 3).astype(np.float32)
    out = jax.jit(lambda p, i, x: model_registry.build(cfg).apply({"params": p}, i, x).logits)
    return np.asarray(out(params, jnp.asarray(ids), jnp.asarray(pix))), ids, pix


def test_released_layout_imports_to_the_native_params_and_logits(dirs):
    native, chat, _, internlm2 = dirs
    kind, cfg, params = registry.load_hf(chat)
    _, ncfg, nparams = registry.load_hf(native)
    assert kind == "internvl"
    assert model_registry.kind_of(cfg.text) == ("llama" if internlm2 else "qwen2")
    assert cfg.image_token_id == INTERNVL_IMAGE_TOKEN_ID and cfg.vision.max_num_tiles == 6
    a, b = (traverse_util.flatten_dict(p, sep="/") for p in (params, nparams))
    assert sorted(a) == sorted(b)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    got, _, _ = _logits(cfg, params)
    ref, _, _ = _logits(ncfg, nparams)
    np.testing.assert_array_equal(got, ref)


def test_converter_output_loads_in_transformers(dirs, tmp_path):
    _, chat, model, _ = dirs
    out = str(tmp_path / "native")
    convert_to_native(chat, out)
    hf = transformers.InternVLForConditionalGeneration.from_pretrained(out).eval()
    _, cfg, params = registry.load_hf(out)
    got, ids, pix = _logits(cfg, params, seed=1)
    with torch.no_grad():
        kw = dict(input_ids=torch.tensor(ids), pixel_values=torch.tensor(pix.transpose(0, 3, 1, 2)))
        ref = model(**kw).logits.numpy()
        conv = hf(**kw).logits.numpy()
    assert np.abs(conv - ref).max() <= 1e-4 and np.abs(got - ref).max() <= 1e-4


def test_wqkv_that_does_not_split_is_an_error_naming_key_and_numbers(dirs, tmp_path):
    _, chat, _, internlm2 = dirs
    if not internlm2:
        pytest.skip("wqkv is InternLM2's")
    bad = str(tmp_path / "bad")
    os.makedirs(bad)
    for name in ("model.safetensors", "added_tokens.json"):
        os.symlink(os.path.join(chat, name), os.path.join(bad, name))
    cfg = json.load(open(os.path.join(chat, "config.json")))
    cfg["llm_config"]["num_key_value_heads"] = 1  # stored: 4 heads, 2 kv heads of 12
    json.dump(cfg, open(os.path.join(bad, "config.json"), "w"))
    with pytest.raises(ConversionError) as err:
        registry.load_hf(bad)
    msg = str(err.value)
    assert "language_model.model.layers.0.attention.wqkv.weight" in msg
    assert "(96, 48)" in msg and "4 query + 2 x 1 key/value heads of 12" in msg and "72" in msg


def test_unsupported_released_fields_are_named(dirs, tmp_path):
    _, chat, _, internlm2 = dirs
    if not internlm2:
        pytest.skip("one layout suffices")
    bad = str(tmp_path / "v1")
    os.makedirs(bad)
    os.symlink(os.path.join(chat, "model.safetensors"), os.path.join(bad, "model.safetensors"))
    cfg = json.load(open(os.path.join(chat, "config.json")))
    json.dump({**cfg, "ps_version": "v1"}, open(os.path.join(bad, "config.json"), "w"))
    with pytest.raises(ConversionError, match="ps_version 'v1'"):
        registry.load_hf(bad)
    json.dump(cfg, open(os.path.join(bad, "config.json"), "w"))  # no tokenizer files
    with pytest.raises(ConversionError, match="<IMG_CONTEXT>"):
        registry.load_hf(bad)
