"""Streamed HF conversion: bf16 kept bit-exact through sharded import/export, memory bounded,
and truncated / missing / wrongly typed shards named with their file and tensor."""

import json
import logging
import os
import shutil
import tracemalloc

import jax
import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open

from mathjax_vl.cli.main import main
from mathjax_vl.hf import checkpoint, registry, streaming
from mathjax_vl.hf.safetensors_io import Header

LAYERS = 8


def _tensors(path: str) -> dict[str, np.ndarray]:
    """Every tensor of an HF dir (all shards), raw bf16 bits as uint16 views."""
    files = [f for f in os.listdir(path) if f.endswith(".safetensors")]
    out = {}
    for f in files:
        with safe_open(os.path.join(path, f), "pt") as st:
            for k in st.keys():
                t = st.get_tensor(k)
                out[k] = (
                    str(t.dtype),
                    t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy(),
                )
    return out


@pytest.fixture(scope="module")
def bf16_src(tmp_path_factory):
    """A bf16 Qwen2ForCausalLM (tied, 8 layers, 9.7 MB) saved by save_pretrained in 3+ shards."""
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(
        vocab_size=512,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        max_position_embeddings=64,
    )
    model = transformers.Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    d = str(tmp_path_factory.mktemp("bf16_src"))
    model.save_pretrained(d, max_shard_size="3MB")
    assert os.path.exists(os.path.join(d, "model.safetensors.index.json"))
    return d


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_bf16_round_trip_bit_identical_shards_load_cleanly(bf16_src, tmp_path, capsys):
    ckpt, out = str(tmp_path / "ckpt"), str(tmp_path / "hf")
    assert main(["import-hf", bf16_src, ckpt, "--max-shard-size", "2MB"]) == 0
    meta = checkpoint.read_meta(ckpt)
    assert meta["source_dtype"] == "bfloat16" and meta["format_version"] == 2
    assert meta["config"]["param_dtype"] == "bfloat16"  # dtype kept by default
    assert os.path.exists(os.path.join(ckpt, "params.safetensors.index.json"))
    capsys.readouterr()
    assert main(["export-hf", ckpt, out, "--max-shard-size", "3MB"]) == 0
    assert "notice" not in capsys.readouterr().err
    index = json.load(open(os.path.join(out, "model.safetensors.index.json")))
    assert len(set(index["weight_map"].values())) >= 3
    a, b = _tensors(bf16_src), _tensors(out)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k][0] == b[k][0] == "torch.bfloat16", k
        np.testing.assert_array_equal(a[k][1], b[k][1], err_msg=k)
    records = _Records()
    logger = transformers.logging.get_logger("transformers")
    logger.addHandler(records)
    try:
        model, info = transformers.Qwen2ForCausalLM.from_pretrained(out, output_loading_info=True)
    finally:
        logger.removeHandler(records)
    assert not any(info.values()), info
    assert not records.records, [r.getMessage() for r in records.records]
    assert next(model.parameters()).dtype == torch.bfloat16


def test_float32_master_exports_in_source_dtype_with_notice(bf16_src, tmp_path, capsys):
    ckpt = str(tmp_path / "ckpt32")
    assert main(["import-hf", bf16_src, ckpt, "--param-dtype", "float32"]) == 0
    _, _, params, _ = registry.open_checkpoint(ckpt)
    assert params["embed_tokens"]["embedding"].dtype == np.float32
    capsys.readouterr()
    assert main(["export-hf", ckpt, str(tmp_path / "hf")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "float32" in err[0] and "bfloat16" in err[0], err
    a, b = _tensors(bf16_src), _tensors(str(tmp_path / "hf"))
    assert all(b[k][0] == "torch.bfloat16" and np.array_equal(a[k][1], b[k][1]) for k in a)
    # an explicit --dtype wins, silently
    assert main(["export-hf", ckpt, str(tmp_path / "hf32"), "--dtype", "float32"]) == 0
    assert capsys.readouterr().err.strip() == ""
    c = _tensors(str(tmp_path / "hf32"))
    assert {v[0] for v in c.values()} == {"torch.float32"}


def test_streamed_paths_hold_memory(bf16_src, tmp_path):
    """Import and export hand out one tensor at a time, and allocate far less than the model:
    about one block (whole rows; 256 KB here, 32 MB by default) plus one HF tensor."""
    names = [f for f in os.listdir(bf16_src) if f.endswith(".safetensors")]
    headers = [Header(os.path.join(bf16_src, f)) for f in names]
    total = sum(e[3] - e[2] for h in headers for e in h.entries.values())
    ckpt, out = str(tmp_path / "ckpt"), str(tmp_path / "hf")
    with streaming.ReadLog() as reads:
        tracemalloc.start()
        with streaming.lazy(block_bytes=256 << 10):
            kind, cfg, params = registry.load_hf(bf16_src, param_dtype="bfloat16")
            registry.save_checkpoint(ckpt, kind, cfg, params, source_dtype="bfloat16")
        _, import_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    n_keys = 1 + 1 + 12 * LAYERS  # embed, norm, 12 tensors per layer
    assert len({r[0] for r in reads.reads}) == n_keys
    assert reads.peak_live <= 2, reads.peak_live
    assert import_peak < total / 4, (import_peak, total)
    with streaming.ReadLog() as reads:
        tracemalloc.start()
        kind, cfg, params, _ = registry.open_checkpoint(ckpt)
        with streaming.lazy(block_bytes=256 << 10):
            registry.save_hf(kind, cfg, params, out)
        _, export_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert reads.peak_live <= 2, reads.peak_live
    assert export_peak < total / 4, (export_peak, total)
    # the eager path really holds everything (so the bounds above can fail)
    tracemalloc.start()
    registry.load_hf(bf16_src, param_dtype="bfloat16")
    _, eager_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert eager_peak > total


def test_torch_bin_streams_with_mmap(bf16_src, tmp_path):
    src = str(tmp_path / "bin")
    model = transformers.Qwen2ForCausalLM.from_pretrained(bf16_src, dtype=torch.bfloat16)
    os.makedirs(src)
    shutil.copy(os.path.join(bf16_src, "config.json"), src)
    torch.save(model.state_dict(), os.path.join(src, "pytorch_model.bin"))  # zip format
    with streaming.ReadLog() as reads:
        with streaming.lazy():
            kind, cfg, lazy = registry.load_hf(src, param_dtype="bfloat16")
        registry.save_checkpoint(str(tmp_path / "ckpt"), kind, cfg, lazy)
    assert reads.peak_live <= 2
    assert {r[0] for r in reads.reads} >= {"model.embed_tokens.weight", "model.norm.weight"}
    _, _, ref = registry.load_hf(bf16_src, param_dtype="bfloat16")
    _, _, got = registry.load_checkpoint(str(tmp_path / "ckpt"))
    jax.tree.map(np.testing.assert_array_equal, ref, got)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_truncated_shard_names_file_and_tensor(bf16_src, tmp_path, capsys):
    src = str(tmp_path / "src")
    shutil.copytree(bf16_src, src)
    shard = sorted(f for f in os.listdir(src) if f.endswith(".safetensors"))[1]
    full = os.path.join(src, shard)
    size = os.path.getsize(full)
    with open(full, "r+b") as f:
        f.truncate(size - 100)
    capsys.readouterr()
    assert main(["import-hf", src, str(tmp_path / "out")]) == 2
    err = _one_error_line(capsys)
    assert shard in err and "truncated" in err and "tensor 'model." in err, err
    assert not os.path.exists(tmp_path / "out")


def test_missing_shard_names_file_and_tensor(bf16_src, tmp_path, capsys):
    src = str(tmp_path / "src")
    shutil.copytree(bf16_src, src)
    index = json.load(open(os.path.join(src, "model.safetensors.index.json")))
    shard = sorted(set(index["weight_map"].values()))[-1]
    first = sorted(k for k, v in index["weight_map"].items() if v == shard)[0]
    os.remove(os.path.join(src, shard))
    capsys.readouterr()
    assert main(["import-hf", src, str(tmp_path / "out")]) == 2
    err = _one_error_line(capsys)
    assert shard in err and "missing" in err and repr(first) in err, err


def test_dtype_the_model_cannot_take_names_file_and_tensor(bf16_src, tmp_path, capsys):
    from safetensors.numpy import load_file, save_file

    src = str(tmp_path / "src")
    shutil.copytree(bf16_src, src)
    index = json.load(open(os.path.join(src, "model.safetensors.index.json")))
    key = "model.layers.3.mlp.up_proj.weight"
    shard = index["weight_map"][key]
    tensors = load_file(os.path.join(src, shard))
    tensors[key] = np.arange(tensors[key].size, dtype=np.int32).reshape(tensors[key].shape)
    save_file(tensors, os.path.join(src, shard), metadata={"format": "pt"})
    capsys.readouterr()
    assert main(["import-hf", src, str(tmp_path / "out")]) == 2
    err = _one_error_line(capsys)
    assert shard in err and repr(key) in err and "I32" in err, err
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize(
    "kind,hf_shape,ours",
    [
        ("linear", (12, 5), (5, 3, 4)),  # q_proj: [H*Dh, D] -> [D, H, Dh]
        ("linear", (5, 12), (3, 4, 5)),  # o_proj: [D, H*Dh] -> [H, Dh, D]
        ("linear", (7, 6), (6, 7)),
        ("copy", (12,), (3, 4)),
        ("copy", (6, 7), (6, 7)),
        ("conv", (6, 3, 2, 2), (12, 6)),
    ],
)
def test_region_reads_match_whole_conversion(kind, hf_shape, ours):
    """Every region of our layout, read through HFLayout, equals the slice of the whole-tensor
    conversion (leaves._to_ours), from one read of the HF tensor."""
    from mathjax_vl.hf.leaves import _to_ours

    rng = np.random.default_rng(0)
    w = rng.standard_normal(hf_shape).astype(np.float32)
    whole = _to_ours(w, kind, ours)
    layout = streaming.HFLayout(kind, hf_shape, ours)
    for _ in range(40):
        region = []
        for n in ours:
            a = int(rng.integers(0, n))
            region.append(slice(a, int(rng.integers(a + 1, n + 1))))
        region = tuple(region)
        seen: list = []

        def read_hf(idx, seen=seen):
            seen.append(idx)
            return w[idx] if idx is not None else w

        got = layout.read(read_hf, streaming.normalize(region, ours))
        np.testing.assert_array_equal(got, whole[region])
        assert len(seen) == 1  # one read of the HF tensor's bounding box
