"""CLIP HF import/export round trips (CLIPModel and CLIPVisionModel) and checkpoint I/O."""

import os

import jax
import numpy as np
import pytest
import torch  # test-only dependency: the dev extra pins torch==2.13.0
import transformers
from safetensors.numpy import load_file

from mathjax_vl.hf import registry

TEXT = dict(
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=1,
    num_attention_heads=4,
    vocab_size=60,
    max_position_embeddings=8,
    eos_token_id=59,
    bos_token_id=1,
    pad_token_id=0,
)
VISION = dict(
    hidden_size=24,
    intermediate_size=40,
    num_hidden_layers=2,
    num_attention_heads=2,
    image_size=16,
    patch_size=8,
)


def _same_tensors(a_dir, b_dir):
    a = load_file(os.path.join(a_dir, "model.safetensors"))
    b = load_file(os.path.join(b_dir, "model.safetensors"))
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("arch", ["CLIPModel", "CLIPVisionModel"])
def test_clip_round_trip_through_checkpoint(arch, tmp_path):
    torch.manual_seed(0)
    if arch == "CLIPModel":
        model = transformers.CLIPModel(
            transformers.CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=16)
        )
    else:
        model = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**VISION))
    src = str(tmp_path / "src")
    model.save_pretrained(src)
    kind, cfg, params = registry.load_hf(src)
    assert kind == ("clip" if arch == "CLIPModel" else "clip_vision")
    registry.save_checkpoint(str(tmp_path / "ckpt"), kind, cfg, params)
    kind2, cfg2, params2 = registry.load_checkpoint(str(tmp_path / "ckpt"))
    assert (kind2, cfg2) == (kind, cfg)
    jax.tree.map(np.testing.assert_array_equal, params, params2)
    registry.save_hf(kind2, cfg2, params2, str(tmp_path / "out"))
    _same_tensors(src, str(tmp_path / "out"))
    cls = getattr(transformers, arch)
    _, info = cls.from_pretrained(str(tmp_path / "out"), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
