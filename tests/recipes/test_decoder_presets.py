"""Recipe presets take any registered decoder (`configs/x.py:SIZE,LLM`): the tiny variants build
their task around that decoder kind, and the real-size presets are the published checkpoints'."""

import pathlib

import jax
import pytest

from mathjax_vl.models import registry
from mathjax_vl.recipes import presets
from mathjax_vl.train.config_loader import load_config
from mathjax_vl.train.tasks import build_task

RECIPES = ["puma_stage1_text_sft", "puma_stage2_kl", "mavis_cot_instruct"]


def _text_cfg(task):
    return task.vlm_cfg.text if hasattr(task, "vlm_cfg") else task.model_cfg


@pytest.mark.parametrize("llm", ["qwen3", "llama", "mistral"])
@pytest.mark.parametrize("recipe", RECIPES)
def test_tiny_recipe_with_each_decoder(recipe, llm):
    config = load_config(f"{pathlib.Path('configs') / recipe}.py:tiny,{llm}")
    task = build_task(config)
    text = _text_cfg(task)
    assert registry.kind_of(text) == llm
    params = jax.eval_shape(lambda b: task.init(jax.random.key(0), b), task.batch_spec(2))
    assert jax.tree_util.tree_leaves(params)


def test_real_size_presets_are_the_published_checkpoints():
    expect = {  # (hidden, layers, vocab, kv heads)
        ("qwen3", "7b"): (4096, 36, 151936, 8),
        ("llama", "7b"): (4096, 30, 102400, 32),  # DeepSeek-Math-7B
        ("llama", "1.5b"): (2048, 16, 128256, 8),  # Llama-3.2-1B
        ("mistral", "7b"): (4096, 32, 32000, 8),
    }
    for (kind, size), want in expect.items():
        d = presets.decoder(kind, size)
        cfg = registry.config_from_dict(d.pop("kind"), d)
        got = (cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size, cfg.num_key_value_heads)
        assert got == want, (kind, size)
    assert presets.decoder("llama", "1.5b")["rope_type"] == "llama3"
    assert registry.config_from_dict("qwen3", presets.qwen3("7b")).qk_norm


def test_unknown_decoder_names_the_registered_ones():
    with pytest.raises(KeyError, match=r"unknown decoder kind 'gemma'.*'llama', 'mistral'"):
        presets.decoder("gemma", "7b")
