"""Initialising a stage, checked by value: from the previous stage's checkpoint (the stage-1
decoder lands under the VLM's language_model by an init.rename rule; the vision tower and
projector, allowed missing, keep their fresh init) and from several HF directories at once
(init.hf_dir: a Qwen2 dir fills language_model, a SigLIP vision dir fills vision_tower).
A single HF dir, on an fsdp=8 mesh, is tests/train/test_hf_init_mesh.py."""

from pathlib import Path

import jax
import numpy as np
import pytest
import torch
import transformers
from flax import traverse_util

from mathjax_vl.train.config_base import tiny_decoder
from mathjax_vl.train.config_loader import load_config
from mathjax_vl.train.hf_init import hf_dirs
from mathjax_vl.train.trainer import Trainer

CONFIGS = Path(__file__).parents[2] / "configs"
COMMON = ["--config.mesh.num_devices=1", "--config.checkpoint.async_save=False"]
VLM = str(CONFIGS / "tiny_multimodal_sft.py")


def _flat(params) -> dict:
    return traverse_util.flatten_dict(jax.device_get(params), sep="/")


@pytest.fixture(scope="module")
def fresh_vlm(tmp_path_factory) -> dict:
    """The tiny VLM's fresh initialisation (same seed as every stage-3 run below)."""
    trainer = Trainer(load_config(VLM, COMMON), tmp_path_factory.mktemp("fresh"))
    return _flat(trainer.initial_state().params())


def test_init_vlm_from_text_stage_checkpoint(tmp_path, fresh_vlm):
    stage1 = load_config(
        str(CONFIGS / "tiny_text_sft.py"),
        [*COMMON, "--config.train.num_steps=1", "--config.checkpoint.interval=1"],
    )
    want = _flat(Trainer(stage1, tmp_path / "s1").run()["state"].params())

    stage3 = load_config(
        VLM,
        [
            *COMMON,
            f"--config.init.checkpoint={tmp_path / 's1' / 'checkpoints'}",
            "--config.init.rename=[('^', 'language_model/')]",
            "--config.init.allow_missing=['^vision_tower/', '^multi_modal_projector/']",
        ],
    )
    state = Trainer(stage3, tmp_path / "s3").initial_state()
    got = _flat(state.params())
    assert int(state.step) == 0 and set(got) == set(fresh_vlm)
    renamed = {"language_model/" + k: v for k, v in want.items()}
    assert set(renamed) == {k for k in got if k.startswith("language_model/")}
    for key, value in renamed.items():  # renamed tensors keep their values ...
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    emb = "language_model/embed_tokens/embedding"
    assert not np.array_equal(renamed[emb], fresh_vlm[emb])  # ... which are not the fresh ones
    fresh_keys = [k for k in got if k not in renamed]
    assert any(k.startswith("vision_tower/") for k in fresh_keys)
    assert any(k.startswith("multi_modal_projector/") for k in fresh_keys)
    for key in fresh_keys:  # the allowed-missing ones keep their fresh init
        np.testing.assert_array_equal(got[key], fresh_vlm[key], err_msg=key)

    no_allow = load_config(
        VLM,
        [
            *COMMON,
            f"--config.init.checkpoint={tmp_path / 's1' / 'checkpoints'}",
            "--config.init.rename=[('^', 'language_model/')]",
        ],
    )
    with pytest.raises(KeyError, match="no source fills parameters.*vision_tower/"):
        Trainer(no_allow, tmp_path / "s3b").initial_state()


def _hf_dirs(tmp_path) -> tuple[str, str, object, object]:
    """A Qwen2ForCausalLM with the tiny decoder's shape and a SigLIP vision tower with the tiny
    VLM's, written by transformers."""
    torch.manual_seed(1)
    d = tiny_decoder()
    qwen = transformers.Qwen2ForCausalLM(
        transformers.Qwen2Config(**{k: d[k] for k in d if k != "head_dim"}, head_dim=d["head_dim"])
    ).eval()
    siglip = transformers.SiglipVisionModel(
        transformers.SiglipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=16,
            patch_size=4,
        )
    ).eval()
    paths = str(tmp_path / "qwen2"), str(tmp_path / "siglip")
    qwen.save_pretrained(paths[0])
    siglip.save_pretrained(paths[1])
    return *paths, qwen, siglip


def test_init_vlm_from_two_hf_dirs(tmp_path, fresh_vlm):
    qwen_dir, siglip_dir, qwen, siglip = _hf_dirs(tmp_path)
    config = load_config(
        VLM,
        [
            *COMMON,
            f"--config.init.hf_dir={qwen_dir},{siglip_dir}",
            "--config.init.allow_missing=['^multi_modal_projector/']",
        ],
    )
    got = _flat(Trainer(config, tmp_path / "run").initial_state().params())
    assert set(got) == set(fresh_vlm)
    sd = {k: v.numpy() for k, v in qwen.state_dict().items()}
    vis = {k: v.numpy() for k, v in siglip.state_dict().items()}
    np.testing.assert_array_equal(
        got["language_model/embed_tokens/embedding"], sd["model.embed_tokens.weight"]
    )
    np.testing.assert_array_equal(got["language_model/norm/scale"], sd["model.norm.weight"])
    q = got["language_model/layers/self_attn/q_proj/kernel"]  # [L, D, heads, head_dim]
    for layer in range(q.shape[0]):
        np.testing.assert_array_equal(
            q[layer].reshape(q.shape[1], -1),
            sd[f"model.layers.{layer}.self_attn.q_proj.weight"].T,
        )
    pos = [k for k in got if k.startswith("vision_tower/") and k.endswith("position_embedding")]
    assert len(pos) == 1
    hf_pos = [k for k in vis if k.endswith("embeddings.position_embedding.weight")]
    assert len(hf_pos) == 1, sorted(vis)[:5]
    np.testing.assert_array_equal(np.asarray(got[pos[0]]).reshape(-1, 32), vis[hf_pos[0]])
    for key in got:  # the projector keeps its fresh init; both towers come from the dirs
        same = np.array_equal(got[key], fresh_vlm[key])
        if key.startswith("multi_modal_projector/"):
            assert same, key
        else:  # equal to the fresh init only where both inits are one constant (norm scale 1)
            assert not same or np.all(got[key] == np.ravel(got[key])[0]), key


def test_hf_dir_lists():
    assert hf_dirs("/m/a") == ["/m/a"]
    assert hf_dirs("/m/a, /m/b") == ["/m/a", "/m/b"]
    assert hf_dirs("['/m/a', '/m/b']") == ["/m/a", "/m/b"]
    assert hf_dirs(("/m/a",)) == ["/m/a"]
    with pytest.raises(ValueError, match="init.hf_dir"):
        hf_dirs("[1, 2]")
