"""Qwen2ForCausalLM import/export: bit-identical round trips, export of changed params loads in
transformers without key warnings and matches our logits, and clear errors on bad directories."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from mathjax_vl.hf import common
from mathjax_vl.hf.qwen2 import load_qwen2, save_qwen2
from mathjax_vl.models.qwen2 import Qwen2


def make_hf_qwen2(path, *, tied, kv=2, dtype=None, max_shard_size=None, seed=0):
    import torch
    import transformers

    cfg = transformers.Qwen2Config(
        vocab_size=61,
        hidden_size=16,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv,
        tie_word_embeddings=tied,
        rope_theta=10000.0,
    )
    torch.manual_seed(seed)
    model = transformers.Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn_like(p)
            p.copy_(1.0 + 0.1 * noise if name.endswith("norm.weight") else 0.2 * noise)
    if dtype is not None:
        model = model.to(dtype)
    kw = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(path, **kw)
    return model


def read_all_tensors(path):
    files = [f for f in os.listdir(path) if f.endswith(".safetensors")]
    out = {}
    for f in files:
        out.update(load_file(os.path.join(path, f)))
    return out


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("qwen2_hf")
    dirs = {}
    for name, tied in (("tied", True), ("untied", False)):
        dirs[name] = str(base / name)
        make_hf_qwen2(dirs[name], tied=tied)
    return dirs


@pytest.mark.parametrize("name", ["tied", "untied"])
@pytest.mark.parametrize("scan", [True, False])
def test_round_trip_bit_identical(hf_dirs, tmp_path, name, scan):
    src = hf_dirs[name]
    cfg, params = load_qwen2(src, scan_layers=scan)
    out = str(tmp_path / "export")
    save_qwen2(params, cfg, out)
    a, b = read_all_tensors(src), read_all_tensors(out)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_sharded_input_and_output(tmp_path):
    src = str(tmp_path / "sharded_src")
    make_hf_qwen2(src, tied=False, max_shard_size="8KB")
    assert os.path.exists(os.path.join(src, common.SAFETENSORS_INDEX))
    cfg, params = load_qwen2(src)
    out = str(tmp_path / "sharded_out")
    files = save_qwen2(params, cfg, out, max_shard_bytes=8 * 1024)
    assert common.SAFETENSORS_INDEX in files and len(files) > 2
    a, b = read_all_tensors(src), read_all_tensors(out)
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    cfg2, params2 = load_qwen2(out)
    assert cfg2 == cfg
    jax.tree.map(np.testing.assert_array_equal, params, params2)


def test_bfloat16_round_trip(tmp_path):
    import torch

    src = str(tmp_path / "bf16")
    make_hf_qwen2(src, tied=True, dtype=torch.bfloat16)
    cfg, params = load_qwen2(src, param_dtype="bfloat16")
    assert params["norm"]["scale"].dtype == jnp.bfloat16
    out = str(tmp_path / "bf16_out")
    save_qwen2(params, cfg, out)
    a, b = read_all_tensors(src), read_all_tensors(out)
    for k in a:
        assert b[k].dtype == a[k].dtype
        np.testing.assert_array_equal(a[k].view(np.uint16), b[k].view(np.uint16), err_msg=k)


@pytest.mark.parametrize("name", ["tied", "untied"])
def test_changed_params_export_matches_transformers(hf_dirs, tmp_path, name):
    import torch
    import transformers

    cfg, params = load_qwen2(hf_dirs[name])
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
    leaves = [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    params = jax.tree.unflatten(treedef, leaves)
    out = str(tmp_path / "changed")
    save_qwen2(params, cfg, out)
    model, info = transformers.Qwen2ForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(2, 11))
    with torch.no_grad():
        ref = model.eval()(input_ids=torch.tensor(ids)).logits.numpy()
    ours = jax.jit(lambda p, x: Qwen2(cfg).apply({"params": p}, x).logits)(params, ids)
    assert np.abs(np.asarray(ours) - ref).max() <= 1e-4


def test_torch_bin_fallback(hf_dirs, tmp_path):
    import torch

    src = str(tmp_path / "bin")
    shutil.copytree(hf_dirs["untied"], src)
    tensors = load_file(os.path.join(src, common.SAFETENSORS))
    os.remove(os.path.join(src, common.SAFETENSORS))
    torch.save(
        {k: torch.from_numpy(v) for k, v in tensors.items()}, os.path.join(src, "pytorch_model.bin")
    )
    _, p_bin = load_qwen2(src)
    _, p_st = load_qwen2(hf_dirs["untied"])
    jax.tree.map(np.testing.assert_array_equal, p_bin, p_st)


# ---- bad input -------------------------------------------------------------------------------


def test_directory_without_weights(hf_dirs, tmp_path):
    d = str(tmp_path / "noweights")
    os.makedirs(d)
    shutil.copy(os.path.join(hf_dirs["tied"], "config.json"), d)
    with pytest.raises(common.MissingWeightsError, match="no weights found") as e:
        load_qwen2(d)
    assert "model.safetensors" in str(e.value) and d in str(e.value)


def test_unsupported_architecture(hf_dirs, tmp_path):
    d = str(tmp_path / "arch")
    shutil.copytree(hf_dirs["tied"], d)
    cfg_file = os.path.join(d, "config.json")
    hf_cfg = json.load(open(cfg_file))
    hf_cfg["architectures"] = ["LlamaForCausalLM"]
    json.dump(hf_cfg, open(cfg_file, "w"))
    with pytest.raises(common.UnsupportedArchitectureError, match="LlamaForCausalLM") as e:
        load_qwen2(d)
    assert "config.json" in str(e.value) and "Qwen2ForCausalLM" in str(e.value)


def test_missing_key(hf_dirs, tmp_path):
    d = str(tmp_path / "missing")
    shutil.copytree(hf_dirs["untied"], d)
    file = os.path.join(d, common.SAFETENSORS)
    tensors = load_file(file)
    del tensors["model.layers.1.self_attn.k_proj.bias"]
    save_file(tensors, file, metadata={"format": "pt"})
    with pytest.raises(
        common.ConversionError, match=r"missing key 'model\.layers\.1\.self_attn\.k_proj\.bias'"
    ) as e:
        load_qwen2(d)
    assert "model.safetensors" in str(e.value)


def test_shape_mismatch(hf_dirs, tmp_path):
    d = str(tmp_path / "shape")
    shutil.copytree(hf_dirs["untied"], d)
    file = os.path.join(d, common.SAFETENSORS)
    tensors = load_file(file)
    tensors["model.layers.0.mlp.up_proj.weight"] = np.zeros((39, 16), np.float32)
    save_file(tensors, file, metadata={"format": "pt"})
    with pytest.raises(common.ConversionError) as e:
        load_qwen2(d)
    msg = str(e.value)
    assert "model.layers.0.mlp.up_proj.weight" in msg and "model.safetensors" in msg
    assert "expected shape (40, 16)" in msg and "found (39, 16)" in msg


def test_unexpected_key_is_not_dropped(hf_dirs, tmp_path):
    d = str(tmp_path / "extra")
    shutil.copytree(hf_dirs["untied"], d)
    file = os.path.join(d, common.SAFETENSORS)
    tensors = load_file(file)
    tensors["model.layers.0.self_attn.o_proj.bias"] = np.zeros((16,), np.float32)
    save_file(tensors, file, metadata={"format": "pt"})
    with pytest.raises(common.ConversionError, match=r"unexpected key.*o_proj\.bias"):
        load_qwen2(d)


def test_unsupported_config_feature(hf_dirs, tmp_path):
    d = str(tmp_path / "sliding")
    shutil.copytree(hf_dirs["tied"], d)
    cfg_file = os.path.join(d, "config.json")
    hf_cfg = json.load(open(cfg_file))
    # sliding windows import now (tests/hf/test_decoder_family.py); a full/sliding layer mix
    # (window from layer 1 of 2 on) is what the one-window-for-all-layers model cannot express
    hf_cfg.update(use_sliding_window=True, sliding_window=4, max_window_layers=1)
    hf_cfg.pop("layer_types", None)
    json.dump(hf_cfg, open(cfg_file, "w"))
    with pytest.raises(common.ConversionError, match="sliding"):
        load_qwen2(d)
