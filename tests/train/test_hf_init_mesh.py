"""init.hf_dir straight onto an fsdp=8 mesh (8 fake CPU devices, conftest): each distinct tensor
region is read once, no sharded parameter is ever read whole, and the result equals the
unsharded load, for an HF dir and for our own checkpoint."""

from pathlib import Path

import jax
import numpy as np
import pytest
import torch
import transformers
from flax import traverse_util

from mathjax_vl.hf import registry, streaming
from mathjax_vl.train.config_base import tiny_decoder
from mathjax_vl.train.config_loader import load_config
from mathjax_vl.train.trainer import Trainer

CONFIG = str(Path(__file__).parents[2] / "configs" / "tiny_text_sft.py")


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A bf16 Qwen2ForCausalLM with tiny_text_sft's decoder shape, in two shards."""
    torch.manual_seed(0)
    d = tiny_decoder()
    cfg = transformers.Qwen2Config(
        vocab_size=d["vocab_size"],
        hidden_size=d["hidden_size"],
        intermediate_size=d["intermediate_size"],
        num_hidden_layers=d["num_hidden_layers"],
        num_attention_heads=d["num_attention_heads"],
        num_key_value_heads=d["num_key_value_heads"],
        head_dim=d["head_dim"],
        tie_word_embeddings=True,
        max_position_embeddings=d["max_position_embeddings"],
        rope_theta=d["rope_theta"],
    )
    model = transformers.Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    path = str(tmp_path_factory.mktemp("qwen2_bf16"))
    model.save_pretrained(path, max_shard_size="20KB")
    return path


def _initial_params(source: str, tmp_path) -> dict:
    overrides = ["--config.mesh.shape.fsdp=8", "--config.mesh.num_devices=8"]
    overrides += ["--config.mesh.shape.data=1", "--config.mesh.shape.tensor=1"]
    config = load_config(CONFIG, overrides)
    config.init.hf_dir = source
    return Trainer(config, tmp_path).initial_state().params()


@pytest.mark.parametrize("form", ["hf", "checkpoint"])
def test_fsdp8_load_reads_only_device_regions_and_equals_unsharded(hf_dir, form, tmp_path):
    assert jax.device_count() == 8
    source = hf_dir
    if form == "checkpoint":
        source = str(tmp_path / "ckpt")
        with streaming.lazy():
            kind, cfg, params = registry.load_hf(hf_dir, param_dtype="bfloat16")
            registry.save_checkpoint(source, kind, cfg, params, source_dtype="bfloat16")
    with streaming.ReadLog() as log:
        params = _initial_params(source, tmp_path / "run")
    flat = traverse_util.flatten_dict(params, sep="/")
    kernel = flat["layers/mlp/gate_proj/kernel"]
    assert not kernel.sharding.is_fully_replicated
    assert len(kernel.addressable_shards) == 8
    # which stored tensors each parameter comes from
    _, _, lazy, _ = registry.open_any(source)
    sources = {k: v.keys for k, v in traverse_util.flatten_dict(lazy, sep="/").items()}
    assert set(sources) == set(flat)
    regions = [(key, region) for key, region, _, _ in log.reads]
    assert len(regions) == len(set(regions)), "a region was read twice"
    read_keys = {key for key, _ in regions}
    sharded = 0
    for name, keys in sources.items():
        assert set(keys) <= read_keys, name
        if flat[name].sharding.is_fully_replicated:
            continue
        sharded += 1
        shard_size = flat[name].addressable_shards[0].data.size
        for key, region, size, full in log.reads:
            if key in keys:  # a device's region of one layer, never the whole tensor
                assert region is not None and size < full, (name, key, region, size, full)
                assert size * len(keys) <= shard_size, (name, key, size, shard_size)
    assert sharded >= 8  # the embedding and every stacked kernel
    # equals the unsharded (eager, whole-tensor) load of the same source
    _, _, ref = registry.load_any(source)
    ref_flat = traverse_util.flatten_dict(ref, sep="/")
    for name, value in flat.items():
        want = np.asarray(ref_flat[name]).astype(value.dtype)
        np.testing.assert_array_equal(np.asarray(value), want, name)
    # and equals the HF weights themselves (independent: transformers' state dict)
    model = transformers.Qwen2ForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    np.testing.assert_array_equal(
        np.asarray(flat["embed_tokens/embedding"]), sd["model.embed_tokens.weight"]
    )
    gate = np.asarray(flat["layers/mlp/gate_proj/kernel"])  # [L, D, F]
    np.testing.assert_array_equal(gate[1], sd["model.layers.1.mlp.gate_proj.weight"].T)
    q = np.asarray(flat["layers/self_attn/q_proj/kernel"])  # [L, D, H, Dh]
    np.testing.assert_array_equal(
        q[0].reshape(q.shape[1], -1), sd["model.layers.0.self_attn.q_proj.weight"].T
    )


def test_trained_float32_master_exports_in_source_dtype(hf_dir, tmp_path, capsys):
    """A run started from the bf16 dir trains float32 params; export-hf --train-dir writes the
    source's bf16 (one-line notice) unless --dtype says otherwise."""
    from safetensors.numpy import load_file

    from mathjax_vl.cli.main import main

    overrides = ["--config.train.num_steps=1", "--config.train.global_batch_size=2"]
    overrides += ["--config.mesh.num_devices=1", "--config.checkpoint.async_save=False"]
    overrides += ["--config.metrics.tensorboard=False", "--config.checkpoint.interval=1"]
    config = load_config(CONFIG, overrides)
    config.init.hf_dir = hf_dir
    run = tmp_path / "run"
    result = Trainer(config, run).run()
    assert result["status"] == "completed"
    trained = traverse_util.flatten_dict(jax.device_get(result["state"].params()), sep="/")
    assert trained["embed_tokens/embedding"].dtype == np.float32
    capsys.readouterr()
    assert main(["export-hf", "--train-dir", str(run), "--out", str(tmp_path / "hf")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    notices = [line for line in err if line.startswith("export-hf:")]
    assert len(notices) == 1 and "float32" in notices[0] and "bfloat16" in notices[0], err
    out = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert out["model.embed_tokens.weight"].dtype.name == "bfloat16"
    want = trained["embed_tokens/embedding"].astype(out["model.embed_tokens.weight"].dtype)
    np.testing.assert_array_equal(out["model.embed_tokens.weight"], want)
    model = transformers.Qwen2ForCausalLM.from_pretrained(str(tmp_path / "hf"))
    assert next(model.parameters()).dtype == torch.bfloat16
