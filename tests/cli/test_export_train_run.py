"""CLI: `export-hf --train-dir RUN` exports a tiny training run; transformers loads it and its
logits match our model's on the params the trainer ended with; bad input exits 2 with a reason."""

import json
import os
import shutil
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch  # test-only dependency: the dev extra pins torch==2.13.0
import transformers
from safetensors.numpy import load_file

from mathjax_vl.cli.main import main
from mathjax_vl.train.config_loader import load_config
from mathjax_vl.train.trainer import Trainer

CONFIGS = Path(__file__).parents[2] / "configs"
TEXT_CONFIG = str(CONFIGS / "tiny_text_sft.py")
VLM_CONFIG = str(CONFIGS / "tiny_multimodal_sft.py")
# 2 steps, a checkpoint after each; no override here changes the architecture
TRAIN = [
    "--config.mesh.num_devices=1",
    "--config.checkpoint.async_save=False",
    "--config.checkpoint.interval=1",
    "--config.train.num_steps=2",
    "--config.train.global_batch_size=2",
    "--config.metrics.tensorboard=False",
]
VLM_TRAIN = ["--config.data.max_images=1", "--config.loss.impl=naive", "--config.data.seq_len=32"]


def _train(config_file, workdir, extra=()):
    config = load_config(config_file, [*TRAIN, *extra])
    result = Trainer(config, workdir).run()
    assert result["step"] == 2 and result["status"] == "completed"
    return config, jax.device_get(result["state"].params())


def _tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "x": 1, "=": 2, "7": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    os.makedirs(path, exist_ok=True)
    tok.save(os.path.join(path, "tokenizer.json"))
    return path


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("text_run")
    config, params = _train(TEXT_CONFIG, workdir)
    return str(workdir), config, params


@pytest.fixture(scope="module")
def vlm_run(tmp_path_factory):
    """One image per row, the naive loss and 32 tokens (the fused loss compiles ~2x slower; the
    architecture is the config's); the run dir holds the config.py the trainer wrote."""
    workdir = tmp_path_factory.mktemp("vlm_run")
    config, params = _train(VLM_CONFIG, workdir, VLM_TRAIN)
    return str(workdir), config, params


def _qwen2_logits(config, params, ids):
    from mathjax_vl.models.qwen2 import Qwen2
    from mathjax_vl.train.tasks.common import qwen2_config

    model = Qwen2(qwen2_config(config.model.decoder))
    forward = jax.jit(lambda p, i: model.apply({"params": p}, i).logits)
    return np.asarray(forward(params, jnp.asarray(ids)))


def test_text_run_exports_to_qwen2_with_matching_logits(text_run, tmp_path, capsys):
    workdir, config, params = text_run
    out, tok = str(tmp_path / "hf"), _tokenizer(str(tmp_path / "tok"))
    code = main(
        [
            "export-hf",
            "--train-dir",
            workdir,
            "--out",
            out,
            "--train-config",
            TEXT_CONFIG,
            "--train-override",
            "train.num_steps=2",
            "--tokenizer",
            tok,
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "step 2" in capsys.readouterr().out
    assert os.path.exists(os.path.join(out, "tokenizer.json"))
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        out, torch_dtype=torch.float32, output_loading_info=True
    )
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = np.random.RandomState(0).randint(0, config.model.decoder.vocab_size, (2, 9))
    with torch.no_grad():
        ref = model.eval()(input_ids=torch.tensor(ids)).logits.numpy()
    ours = _qwen2_logits(config, params, ids)
    assert ours.shape == ref.shape == (2, 9, config.model.decoder.vocab_size)
    assert np.abs(ours - ref).max() <= 1e-4
    assert np.abs(ref).max() > 1e-3  # a real forward, not zeros


def _saved_params(workdir: str, step: int) -> dict:
    """Checkpoint `step`'s parameters as flat host arrays, read with orbax itself."""
    import orbax.checkpoint as ocp
    from flax import traverse_util

    path = Path(workdir) / "checkpoints" / str(step) / "state"
    ckptr = ocp.PyTreeCheckpointer()
    meta = ckptr.metadata(path)
    tree = meta.tree if hasattr(meta, "tree") else meta.item_metadata.tree
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    state = ckptr.restore(path, args=ocp.args.PyTreeRestore(restore_args=args))
    flat = traverse_util.flatten_dict(dict(state["trainable"]), sep="/")
    flat.update(traverse_util.flatten_dict(dict(state.get("frozen") or {}), sep="/"))
    return flat


def test_step_selects_the_checkpoint(text_run, tmp_path, capsys):
    """--step 1 exports exactly checkpoint 1's parameters (every tensor, read back through the
    HF importer), which are not step 2's (one Adam step at lr 1e-3 moves every trained tensor);
    the default exports the last step's."""
    from flax import traverse_util

    from mathjax_vl.hf import registry

    workdir, _, params = text_run
    out1, out2 = str(tmp_path / "s1"), str(tmp_path / "s2")
    common = ["--train-config", TEXT_CONFIG]
    assert main(["export-hf", "--train-dir", workdir, "--out", out1, "--step", "1", *common]) == 0
    assert main(["export-hf", "--train-dir", workdir, "--out", out2, *common]) == 0
    saved1, saved2 = _saved_params(workdir, 1), _saved_params(workdir, 2)
    final = traverse_util.flatten_dict(params, sep="/")
    for out, saved in ((out1, saved1), (out2, final)):
        kind, _, exported = registry.load_hf(out)
        exported = traverse_util.flatten_dict(exported, sep="/")
        assert kind == "qwen2" and sorted(exported) == sorted(saved)
        for key, value in saved.items():
            np.testing.assert_array_equal(np.asarray(exported[key]), value, err_msg=key)
    for key, value in saved2.items():
        np.testing.assert_array_equal(value, final[key], err_msg=key)
        assert not np.array_equal(saved1[key], value), key  # step 1 is not step 2
    emb = "model.embed_tokens.weight"  # the HF file itself, without our importer
    s1 = load_file(os.path.join(out1, "model.safetensors"))
    np.testing.assert_array_equal(s1[emb], saved1["embed_tokens/embedding"])
    assert json.load(open(os.path.join(out1, "config.json")))["architectures"] == [
        "Qwen2ForCausalLM"
    ]


def test_vlm_run_exports_to_llava_with_matching_logits(vlm_run, tmp_path, capsys):
    from mathjax_vl.models.vlm import VLM
    from mathjax_vl.train.tasks.vlm_common import vlm_config

    workdir, config, params = vlm_run
    out = str(tmp_path / "llava")
    # no --train-config: RUN_DIR/config.py (the demo's convention) is read
    assert main(["export-hf", "--train-dir", workdir, "--out", out]) == 0, capsys.readouterr().err
    model, info = transformers.LlavaForConditionalGeneration.from_pretrained(
        out, torch_dtype=torch.float32, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    cfg = vlm_config(config.model)
    rng = np.random.RandomState(1)
    seq = cfg.image_seq_length  # 15: 16 patches, the first dropped ("default" strategy)
    ids = rng.randint(0, cfg.image_token_id, (1, seq + 6))
    ids[0, 2 : 2 + seq] = cfg.image_token_id
    pixels = rng.randn(1, 16, 16, 3).astype(np.float32)  # NHWC
    with torch.no_grad():
        ref = model.eval()(
            input_ids=torch.tensor(ids), pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2))
        ).logits.numpy()
    forward = jax.jit(lambda p, i, x: VLM(cfg).apply({"params": p}, i, x).logits)
    ours = np.asarray(forward(params, jnp.asarray(ids), jnp.asarray(pixels)))
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-4
    # the image changes the logits, so the vision tower and projector were exported too
    with torch.no_grad():
        other = model(
            input_ids=torch.tensor(ids), pixel_values=torch.tensor(-pixels.transpose(0, 3, 1, 2))
        ).logits.numpy()
    assert np.abs(other - ref).max() > 1e-4


def test_dual_encoder_run_exports_to_clip(tmp_path, capsys):
    """A checkpoint in the trainer's layout (Checkpointer, trainable/frozen split, optimizer
    state) for the CLIP-loss contrastive task, written directly (a third tiny training would
    double this file's time): exported as CLIPModel with matching embeddings and logits."""
    import flax.linen as nn
    from flax import traverse_util

    from mathjax_vl.models.clip import CLIPDualEncoder
    from mathjax_vl.train.checkpointing import Checkpointer
    from mathjax_vl.train.tasks.contrastive import Contrastive

    config_file = str(CONFIGS / "tiny_contrastive.py")
    task = Contrastive(load_config(config_file))
    cfg = task.clip_cfg
    v = cfg.vision
    pixels = np.random.RandomState(2).randn(3, v.image_size, v.image_size, 3).astype(np.float32)
    ids = np.random.RandomState(3).randint(0, 200, (2, 7))
    ids[:, -1] = cfg.text.eos_token_id  # CLIP pools the text at its end-of-text token
    shapes = jax.eval_shape(
        lambda: nn.meta.unbox(task.model.init(jax.random.key(5), pixels, ids, ids > 0))
    )["params"]
    rng = np.random.default_rng(5)  # random values (no init compile); every tensor distinct
    params = jax.tree.map(lambda a: (0.2 * rng.standard_normal(a.shape)).astype(a.dtype), shapes)
    flat = traverse_util.flatten_dict(params, sep="/")
    frozen = traverse_util.unflatten_dict(
        {k: w for k, w in flat.items() if "/vision_model/" in k}, sep="/"
    )
    trainable = traverse_util.unflatten_dict(
        {k: w for k, w in flat.items() if "/vision_model/" not in k}, sep="/"
    )
    state = types.SimpleNamespace(
        step=np.int32(4), trainable=trainable, frozen=frozen, opt_state={"count": np.int32(4)}
    )
    run = tmp_path / "run"
    ckpt = Checkpointer(run / "checkpoints", interval=1, keep=1, async_save=False)
    ckpt.save(4, state, {"position": 0}, {"step": 4})
    ckpt.close()

    out = str(tmp_path / "clip")
    args = ["export-hf", "--train-dir", str(run), "--out", out, "--train-config", config_file]
    assert main(args) == 0, capsys.readouterr().err
    model, info = transformers.CLIPModel.from_pretrained(
        out, torch_dtype=torch.float32, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        ref = model.eval()(
            input_ids=torch.tensor(ids), pixel_values=torch.tensor(pixels.transpose(0, 3, 1, 2))
        )
    ours = jax.jit(lambda p, x, i: CLIPDualEncoder(cfg).apply({"params": p}, x, i))(
        params["clip"], pixels, ids
    )
    for key in ("image_embeds", "text_embeds", "logits_per_image"):
        np.testing.assert_allclose(
            np.asarray(ours[key]), getattr(ref, key).numpy(), atol=1e-4, err_msg=key
        )


def _fails(argv, capsys, *needles):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_bad_input_exits_2_with_the_reason(text_run, tmp_path, capsys):
    workdir = text_run[0]
    out = str(tmp_path / "out")
    cfg = ["--train-config", TEXT_CONFIG]
    # the two forms are exclusive; the run form needs --out; run flags need --train-dir
    _fails(["export-hf", "ckpt", "--train-dir", workdir, "--out", out], capsys, "not both")
    _fails(["export-hf", "--train-dir", workdir, *cfg], capsys, "--out OUT_DIR")
    _fails(["export-hf", "ckpt", out, "--step", "1"], capsys, "--step", "--train-dir")
    _fails(["export-hf"], capsys, "--train-dir RUN_DIR")
    # unknown step: names the step and the ones there are
    _fails(["export-hf", "--train-dir", workdir, "--out", out, "--step", "7", *cfg], capsys,
           "step 7", "[1, 2]")  # fmt: skip
    # a dir without checkpoints, and a missing dir
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(["export-hf", "--train-dir", str(empty), "--out", out, *cfg], capsys, str(empty),
           "checkpoints/<step>/")  # fmt: skip
    _fails(["export-hf", "--train-dir", str(tmp_path / "nope"), "--out", out, *cfg], capsys,
           "nope", "does not exist")  # fmt: skip
    # a run dir without config.py (the trainer writes one; e.g. copied checkpoints only) and no
    # --train-config
    bare = tmp_path / "bare"
    shutil.copytree(os.path.join(workdir, "checkpoints"), bare / "checkpoints")
    _fails(["export-hf", "--train-dir", str(bare), "--out", out], capsys, "--train-config",
           "config.py")  # fmt: skip
    # model kinds the exporter does not handle: an unknown one, the sigmoid-loss dual encoder
    _fails(["export-hf", "--train-dir", workdir, "--out", out, *cfg, "--train-override",
            "model.kind=mystery"], capsys, "'mystery'", "dual_encoder")  # fmt: skip
    _fails(["export-hf", "--train-dir", workdir, "--out", out, "--train-config",
            str(CONFIGS / "tiny_contrastive.py") + ":siglip"], capsys, "dual_encoder",
           "logit_bias")  # fmt: skip
    # a config whose architecture is not the run's: the missing parameters are named
    _fails(["export-hf", "--train-dir", workdir, "--out", out, "--train-config", VLM_CONFIG],
           capsys, "lacks parameters", "language_model/")  # fmt: skip
    # a bad override names the key
    _fails(["export-hf", "--train-dir", workdir, "--out", out, *cfg, "--train-override",
            "model.nope=1"], capsys, "model.nope")  # fmt: skip
    assert not os.path.exists(out)  # nothing written on failure
    # a non-empty output dir is refused
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    _fails(["export-hf", "--train-dir", workdir, "--out", str(tmp_path / "full"), *cfg], capsys,
           "not empty")  # fmt: skip
