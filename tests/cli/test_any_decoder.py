"""The consumers take any registered decoder, end to end with a Mistral (sliding window 4, shorter
than the 16-token rows): train 2 steps (the tiny text SFT recipe with model.kind=mistral),
`export-hf --train-dir` to a MistralForCausalLM that transformers loads with the same logits,
`mathjax-vl generate` from it, eval loading, and stage init from the exported HF dir."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from mathjax_vl.cli.main import main
from mathjax_vl.models import registry
from mathjax_vl.train.config_loader import load_config
from mathjax_vl.train.trainer import Trainer

CONFIG = "configs/tiny_text_sft.py"
OVERRIDES = [
    "--config.model.kind=mistral",
    "--config.mesh.num_devices=1",
    "--config.checkpoint.async_save=False",
    "--config.checkpoint.interval=1",
    "--config.train.num_steps=2",
    "--config.train.global_batch_size=2",
    "--config.metrics.tensorboard=False",
    "--config.data.seq_len=16",
]


def _tokenizer(path, vocab_size):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    os.makedirs(path, exist_ok=True)
    tok.save(os.path.join(path, "tokenizer.json"))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("mistral_run"))
    config = load_config(CONFIG, OVERRIDES)
    config.model.decoder.sliding_window = 4
    result = Trainer(config, workdir).run()
    assert result["status"] == "completed"
    return workdir, config, jax.device_get(result["state"].params())


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    workdir, config, _ = run
    out = str(tmp_path_factory.mktemp("mistral_hf") / "hf")
    tok = _tokenizer(str(tmp_path_factory.mktemp("tok")), config.model.decoder.vocab_size)
    assert main(["export-hf", "--train-dir", workdir, "--out", out, "--tokenizer", tok]) == 0
    return out


def test_export_train_dir_is_a_mistral_with_matching_logits(run, exported):
    _, config, params = run
    model = transformers.AutoModelForCausalLM.from_pretrained(exported, torch_dtype=torch.float32)
    assert type(model).__name__ == "MistralForCausalLM"
    assert model.config.sliding_window == 4
    ids = np.random.RandomState(0).randint(0, config.model.decoder.vocab_size, (2, 12))
    with torch.no_grad():
        ref = model.eval()(input_ids=torch.tensor(ids)).logits.numpy()
    from mathjax_vl.models.build import model_config

    cfg = model_config(config.model)
    assert registry.kind_of(cfg) == "mistral" and cfg.sliding_window == 4
    ours = registry.build(cfg).apply({"params": params}, jnp.asarray(ids)).logits
    assert np.abs(np.asarray(ours) - ref).max() <= 1e-4


def test_generate_cli_and_eval_loading(exported, capsys):
    from mathjax_vl.eval.loading import load_model

    handle = load_model(exported)
    assert handle.kind == "decoder" and not handle.is_vlm
    assert registry.kind_of(handle.config) == "mistral"
    args = ["generate", "--model", exported, "--prompt", "w1 w2 w3", "--raw", "--max-new-tokens"]
    code = main([*args, "6"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # sharded over 4 of the 8 fake devices (fsdp x tensor): the same greedy text
    assert main([*args, "6", "--mesh", "fsdp=2,tensor=2"]) == 0
    assert capsys.readouterr().out == captured.out


def test_stage_init_from_the_exported_dir(run, exported):
    from flax import traverse_util

    from mathjax_vl.train.hf_init import load_params
    from mathjax_vl.train.tasks import build_task

    _, config, params = run
    task = build_task(config)
    fresh = jax.device_get(jax.jit(task.init)(jax.random.key(1), _batch(task)))
    import flax.linen as nn

    loaded = load_params(config, exported, nn.meta.unbox(fresh))
    flat = traverse_util.flatten_dict(loaded, sep="/")
    want = traverse_util.flatten_dict(params, sep="/")
    assert sorted(flat) == sorted(want)
    for key, value in want.items():
        np.testing.assert_array_equal(np.asarray(flat[key]), np.asarray(value), err_msg=key)


def test_stage_init_refuses_a_mismatched_decoder_kind(exported):
    from mathjax_vl.train.hf_init import placement

    qwen = load_config(CONFIG, [o for o in OVERRIDES if "model.kind" not in o])
    from mathjax_vl.models.build import model_config

    with pytest.raises(ValueError, match=r"'mistral' model cannot initialise.*fit: \['qwen2'\]"):
        placement(qwen, model_config(qwen.model), "mistral", exported)


def _batch(task):
    return {k: jnp.zeros(s.shape, s.dtype) for k, s in task.batch_spec(1).items()}
