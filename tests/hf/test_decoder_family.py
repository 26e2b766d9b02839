"""The decoder family against PyTorch `transformers` (tiny random float32 models, save_pretrained):
Qwen3, Llama (llama3 and linear RoPE scaling) and Mistral (sliding window shorter than the prompt,
a 600-token prompt included) give logits within 1e-4, greedy 32-token generation equals
`generate` (Mistral decoding far past its window, rows of different lengths), import -> export
is bit-identical, and bad directories fail naming file, field / key and what is supported."""

import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from mathjax_vl.decoding import SamplingConfig, generate
from mathjax_vl.hf import registry
from mathjax_vl.hf.common import ConversionError, UnsupportedArchitectureError
from mathjax_vl.hf.tiny import DECODER_VOCAB, make_tiny_decoder
from mathjax_vl.models import registry as model_registry

NAMES = ("qwen3", "llama", "llama_linear", "mistral")
KINDS = {"qwen3": "qwen3", "llama": "llama", "llama_linear": "llama", "mistral": "mistral"}


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    base = tmp_path_factory.mktemp("family")
    out = {}
    for name in NAMES:
        path = str(base / name)
        out[name] = (path, make_tiny_decoder(path, name))
    return out


def hf_logits(model, ids, mask=None):
    import torch

    with torch.no_grad():
        kw = {} if mask is None else {"attention_mask": torch.tensor(np.asarray(mask))}
        return model(torch.tensor(np.asarray(ids)), **kw).logits.float().numpy()


def hf_greedy(model, ids, mask, n):
    import torch

    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
    return out[:, ids.shape[1] :].numpy()


def ours_logits(path, ids, mask=None, **knobs):
    kind, cfg, params = registry.load_hf(path, **knobs)
    model = model_registry.build(cfg)
    out = model.apply({"params": params}, np.asarray(ids), attention_mask=mask)
    return kind, cfg, np.asarray(out.logits)


@pytest.mark.parametrize("name", NAMES)
def test_logits_match_transformers(family, name):
    path, model = family[name]
    rng = np.random.default_rng(0)
    ids = rng.integers(0, DECODER_VOCAB, size=(2, 40)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 31:] = 0  # right padding in row 1
    kind, _, ours = ours_logits(path, ids, mask)
    assert kind == KINDS[name]
    ref = hf_logits(model, ids, mask)
    np.testing.assert_allclose(ours[0], ref[0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours[1, :31], ref[1, :31], atol=1e-4, rtol=0)


def test_config_knobs_read(family):
    cfgs = {name: registry.load_hf(family[name][0])[1] for name in NAMES}
    assert cfgs["qwen3"].qk_norm and not cfgs["qwen3"].qkv_bias and cfgs["qwen3"].head_dim == 16
    assert cfgs["llama"].rope_type == "llama3" and cfgs["llama"].rope_factor == 8.0
    assert cfgs["llama"].rope_original_max_position_embeddings == 64
    assert cfgs["llama_linear"].rope_type == "linear" and cfgs["llama_linear"].rope_factor == 4.0
    assert cfgs["mistral"].sliding_window == 8 and not cfgs["mistral"].qkv_bias


def test_mistral_600_token_prompt_and_blocked_path(family):
    """A window of 8 over 600 tokens, through the blocked causal path (query blocks of 64, so
    key blocks below the window are skipped, scanned layers) and the plain one (one block,
    unrolled layers)."""
    path, model = family["mistral"]
    rng = np.random.default_rng(1)
    ids = rng.integers(0, DECODER_VOCAB, size=(1, 600)).astype(np.int32)
    ref = hf_logits(model, ids)
    for block, scan in ((64, True), (0, False)):
        _, _, ours = ours_logits(path, ids, scan_layers=scan, attention_query_block=block)
        np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0, err_msg=f"block {block}")


def test_llama3_rope_long_positions(family):
    """llama3 scaling changes frequencies only past original_max_position_embeddings (64)."""
    path, model = family["llama"]
    ids = np.random.default_rng(2).integers(0, DECODER_VOCAB, size=(1, 300)).astype(np.int32)
    _, _, ours = ours_logits(path, ids)
    np.testing.assert_allclose(ours, hf_logits(model, ids), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["qwen3", "llama", "mistral"])
def test_greedy_generation_matches_transformers(family, name):
    """32 greedy tokens, a left-padded batch of rows of lengths 5, 12 and 20: Mistral (window 8)
    decodes ~40 tokens past its window in its KV cache."""
    path, model = family[name]
    rng = np.random.default_rng(3)
    lengths = (5, 12, 20)
    t = max(lengths)
    ids = np.zeros((len(lengths), t), np.int32)
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, t - n :] = rng.integers(1, DECODER_VOCAB, size=n)
        mask[row, t - n :] = 1
    ref = hf_greedy(model, ids, mask, 32)
    _, cfg, params = registry.load_hf(path)
    out = generate(
        model_registry.build(cfg),
        params,
        ids,
        mask,
        sampling=SamplingConfig(max_new_tokens=32, pad_token=0),
    )
    np.testing.assert_array_equal(np.asarray(out.tokens), ref)


def read_all_tensors(path):
    out = {}
    for f in sorted(os.listdir(path)):
        if f.endswith(".safetensors"):
            out.update(load_file(os.path.join(path, f)))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_import_export_bit_identical(family, tmp_path, name):
    import transformers

    src = family[name][0]
    kind, cfg, params = registry.load_hf(src)
    out = str(tmp_path / "export")
    registry.save_hf(kind, cfg, params, out)
    a, b = read_all_tensors(src), read_all_tensors(out)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # the exported config means the same model to transformers and to us
    hf_cfg = transformers.AutoConfig.from_pretrained(out)
    src_cfg = transformers.AutoConfig.from_pretrained(src)
    assert type(hf_cfg) is type(src_cfg)
    assert registry.load_hf(out)[1] == cfg
    for field in ("head_dim", "sliding_window", "rope_parameters"):
        assert getattr(hf_cfg, field, None) == getattr(src_cfg, field, None), field


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_config(path, **fields):
    file = os.path.join(path, "config.json")
    with open(file) as f:
        cfg = json.load(f)
    cfg.update(fields)
    with open(file, "w") as f:
        json.dump(cfg, f)


def test_unregistered_architecture_lists_registered(family, tmp_path):
    bad = _copy(family["llama"][0], str(tmp_path / "bad"))
    _edit_config(bad, architectures=["GemmaForCausalLM"], model_type="gemma")
    with pytest.raises(UnsupportedArchitectureError) as e:
        registry.load_hf(bad)
    msg = str(e.value)
    assert os.path.join(bad, "config.json") in msg and "GemmaForCausalLM" in msg
    for arch in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"):
        assert arch in msg


def test_unsupported_rope_type_names_field_and_supported(family, tmp_path):
    bad = _copy(family["llama"][0], str(tmp_path / "bad"))
    _edit_config(bad, rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0})
    with pytest.raises(ConversionError) as e:
        registry.load_hf(bad)
    msg = str(e.value)
    assert os.path.join(bad, "config.json") in msg
    assert "rope_parameters.rope_type 'yarn'" in msg and "['default', 'linear', 'llama3']" in msg


def test_mixed_layer_types_refused(family, tmp_path):
    bad = _copy(family["mistral"][0], str(tmp_path / "bad"))
    _edit_config(bad, architectures=["Qwen2ForCausalLM"], model_type="qwen2",
                 use_sliding_window=True, max_window_layers=1)  # fmt: skip
    with pytest.raises(ConversionError, match="max_window_layers 1 .*supported"):
        registry.load_hf(bad)


def test_leftover_tensor_names_file_and_key(family, tmp_path):
    bad = _copy(family["mistral"][0], str(tmp_path / "bad"))
    file = os.path.join(bad, "model.safetensors")
    tensors = load_file(file)
    tensors["model.layers.0.self_attn.q_proj.bias"] = np.zeros(32, np.float32)
    save_file(tensors, file)
    with pytest.raises(ConversionError) as e:
        registry.load_hf(bad)
    msg = str(e.value)
    assert bad in msg and "model.layers.0.self_attn.q_proj.bias" in msg and "mistral" in msg
