"""Multi-source stage init (train/init_sources.py), checked by value.

The acceptance run: a tiny Math-PUMA stage 1 (text SFT) trains a step, then stage 2 starts from
two sources at once - the stage-1 run's LLM under language_model/ and a transformers-written
SiglipModel's vision half under vision_tower/ - with a fresh projector. At step 0 of stage 2 the
tower equals the HF tower bit for bit (every tensor, against transformers' own state dict) and
the LLM equals the stage-1 checkpoint; one step of stage 2 then trains. The errors (a parameter
no source fills, one two sources fill) and one source filling two subtrees are checked too.
"""

import logging
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
import transformers
from flax import traverse_util

from mathjax_vl.errors import ConfigError, ConfigKeyError
from mathjax_vl.train import init_sources
from mathjax_vl.train.config_loader import load_config
from mathjax_vl.train.trainer import Trainer

CONFIGS = Path(__file__).parents[2] / "configs"
COMMON = ["--config.mesh.num_devices=1", "--config.checkpoint.async_save=False"]
STAGE2 = str(CONFIGS / "tiny_puma_kl.py")
# config_base.tiny_vlm's tower, in transformers' SiglipVisionConfig fields
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              image_size=16, patch_size=4)  # fmt: skip


def _flat(params) -> dict:
    return traverse_util.flatten_dict(jax.device_get(params), sep="/")


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny text-SFT run (1 step, checkpointed) and its trained params."""
    run = tmp_path_factory.mktemp("stage1")
    config = load_config(
        str(CONFIGS / "tiny_text_sft.py"),
        [*COMMON, "--config.train.num_steps=1", "--config.checkpoint.interval=1"],
    )
    result = Trainer(config, run).run()
    assert result["status"] == "completed"
    return run, _flat(result["state"].params())


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory) -> tuple[str, dict]:
    """A transformers SiglipModel (both towers) whose vision half has tiny_vlm's tower shape."""
    torch.manual_seed(3)
    model = transformers.SiglipModel(
        transformers.SiglipConfig(
            vision_config=VISION,
            text_config=dict(
                vocab_size=64,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=4,
                max_position_embeddings=16,
                bos_token_id=1,
                eos_token_id=2,
            ),
        )
    ).eval()
    path = str(tmp_path_factory.mktemp("siglip"))
    model.save_pretrained(path)
    return path, {k: v.numpy() for k, v in model.state_dict().items()}


def _stage2_config(sources: str, *extra: str):
    return load_config(
        STAGE2,
        [
            *COMMON,
            f"--config.init.sources={sources}",
            "--config.init.allow_missing=['^multi_modal_projector/']",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def stage2(stage1, siglip_dir, tmp_path_factory):
    """Stage 2 from the stage-1 run (LLM) and the HF SiglipModel (tower), at step 0."""
    run1, _ = stage1
    hf_path, _ = siglip_dir
    sources = (
        f"[{{'path': '{run1}', 'into': 'language_model', 'name': 'stage1'}}, "
        f"{{'path': '{hf_path}', 'take': 'vision_model', 'into': 'vision_tower'}}]"
    )
    config = _stage2_config(
        sources,
        "--config.train.num_steps=1",
        "--config.checkpoint.interval=1",
        "--config.optim.warmup_ratio=0.0",
    )
    trainer = Trainer(config, tmp_path_factory.mktemp("stage2"))
    handler = _Capture()
    logger = logging.getLogger("mathjax_vl.train.init_sources")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        state0 = trainer.initial_state()
    finally:
        logger.removeHandler(handler)
    return trainer, _flat(state0.params()), int(state0.step), handler.lines


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_stage2_step0_has_stage1_llm_and_hf_tower(stage1, siglip_dir, stage2):
    _, llm = stage1
    hf_path, hf_state = siglip_dir
    trainer, got, step, log_lines = stage2
    assert step == 0

    # the LLM is the stage-1 checkpoint, tensor for tensor
    lm = {k[len("language_model/") :]: v for k, v in got.items() if k.startswith("language_model/")}
    assert set(lm) == set(llm)
    for key, value in llm.items():
        np.testing.assert_array_equal(lm[key], value, err_msg=key)

    # the tower is the HF tower bit for bit: every tensor of transformers' vision_model
    from mathjax_vl.hf.siglip import vision_state
    from mathjax_vl.models.build import model_config

    tower_cfg = model_config(trainer.config.model).vision
    tower = traverse_util.unflatten_dict(
        {k[len("vision_tower/") :]: v for k, v in got.items() if k.startswith("vision_tower/")},
        sep="/",
    )
    ours = vision_state(tower, tower_cfg, "vision_model.")
    theirs = {k: v for k, v in hf_state.items() if k.startswith("vision_model.")}
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert ours[key].dtype == value.dtype and np.array_equal(ours[key], value), key
    # and, read without the table: the patch conv [D, C, p, p] -> our kernel [p*p*C, D]
    conv = hf_state["vision_model.embeddings.patch_embedding.weight"]
    np.testing.assert_array_equal(
        got["vision_tower/embeddings/patch_embedding/kernel"],
        conv.transpose(2, 3, 1, 0).reshape(-1, conv.shape[0]),
    )

    # the projector, allowed missing, is fresh; the log names each subtree's source
    report = trainer.init_report
    assert report.fresh and all(k.startswith("multi_modal_projector/") for k in report.fresh)
    assert {report.filled[k] for k in got if k.startswith("language_model/")} == {"stage1"}
    assert {report.filled[k] for k in got if k.startswith("vision_tower/")} == {hf_path}
    text = "\n".join(log_lines)
    assert "init: language_model/ <- stage1 [run " in text
    assert f"init: vision_tower/ <- {hf_path} [siglip dir" in text
    assert "init: multi_modal_projector/ <- fresh init (allow_missing) (4 params)" in text
    assert f"init: 24 tensors of {hf_path} unused" in text  # SigLIP's text tower and logits


@pytest.mark.slow  # ~30 s more on 2 cores (compiles the KL step); the step-0 checks are above
def test_stage2_trains_a_step_from_there(stage1, stage2):
    _, llm = stage1
    trainer, got, _, _ = stage2
    result = trainer.run()
    assert result["status"] == "completed" and result["step"] == 1
    after = _flat(result["state"].params())
    np.testing.assert_array_equal(  # the frozen LLM stays the stage-1 one
        after["language_model/embed_tokens/embedding"], llm["embed_tokens/embedding"]
    )
    key = "vision_tower/embeddings/patch_embedding/kernel"  # the tower trains
    assert not np.array_equal(after[key], got[key])


def _fresh(stage2):
    """The stage-2 param tree as jax arrays (shapes and shardings are what fill() uses)."""
    _, got, _, _ = stage2
    return traverse_util.unflatten_dict({k: jax.numpy.asarray(v) for k, v in got.items()}, "/")


def test_unfilled_parameter_is_an_error_naming_it(stage1, stage2):
    run1, _ = stage1
    source = init_sources.Source(path=str(run1), into=("language_model",))
    config = stage2[0].config
    with pytest.raises(ConfigKeyError, match=r"no source fills parameters \['vision_tower/"):
        init_sources.fill(config, _fresh(stage2), [source], ["^multi_modal_projector/"])


def test_two_sources_filling_one_parameter_is_an_error_naming_both(stage1, stage2):
    run1, _ = stage1
    first = init_sources.Source(path=str(run1), into=("language_model",), name="first")
    second = init_sources.Source(
        path=str(run1), take="layers", into=("language_model/layers",), name="second"
    )
    with pytest.raises(
        ConfigError,
        match=r"parameter 'language_model/layers/\S+' is filled twice: by first \(layers/\S+\) "
        r"and by second \(layers/\S+\)",
    ):
        init_sources.fill(stage2[0].config, _fresh(stage2), [first, second])


def test_shape_mismatch_names_source_key_and_shapes(siglip_dir, stage2):
    hf_path, _ = siglip_dir  # the SigLIP text tower's embedding is not the LLM's
    source = init_sources.Source(
        path=hf_path,
        take="text_model/token_embedding",
        into=("language_model/embed_tokens/embedding",),
    )
    with pytest.raises(
        ConfigError,
        match=r"text_model/token_embedding -> language_model/embed_tokens/embedding: expected "
        r"shape \(256, 32\), found \(64, 32\)",
    ):
        init_sources.fill(stage2[0].config, _fresh(stage2), [source])


def test_one_source_fills_two_subtrees(stage1, stage2):
    """A policy and its frozen reference from one run checkpoint (what DPO needs): both copies
    equal the checkpoint and are separate buffers."""
    run1, llm = stage1
    lm = _fresh(stage2)["language_model"]
    two = {"policy": lm, "reference": jax.tree.map(lambda x: x + 1, lm)}
    source = init_sources.Source(path=str(run1), into=("policy", "reference"))
    params, report = init_sources.fill(stage2[0].config, two, [source])
    flat = traverse_util.flatten_dict(params, sep="/")
    for key, value in llm.items():
        np.testing.assert_array_equal(np.asarray(flat[f"policy/{key}"]), value, err_msg=key)
        np.testing.assert_array_equal(np.asarray(flat[f"reference/{key}"]), value, err_msg=key)
        a, b = flat[f"policy/{key}"], flat[f"reference/{key}"]
        assert a.unsafe_buffer_pointer() != b.unsafe_buffer_pointer(), key
    assert sorted({s for s, _, _ in report.subtrees}) == ["policy/", "reference/"]


def test_parse_source_fields_and_errors():
    s = init_sources.parse_source(
        {"path": "/r", "take": "/clip/vision_model/", "into": ["a/", "b"], "rename": [["x", "y"]]},
        "init.sources[0]",
    )
    assert (s.take, s.into, s.rename) == ("clip/vision_model", ("a", "b"), (("x", "y"),))
    with pytest.raises(ConfigKeyError, match=r"init.sources\[1\]: unknown field\(s\) \['tkae'\]"):
        init_sources.parse_source({"path": "/r", "tkae": "x"}, "init.sources[1]")
    with pytest.raises(ConfigError, match="not a \\(regex, replacement\\) pair"):
        init_sources.parse_source({"path": "/r", "rename": ["^"]}, "s")
    legacy = init_sources.sources_of(
        {"checkpoint": "/runs/s1", "rename": [("^", "language_model/")], "hf_dir": "/m/a,/m/b"}
    )
    assert [(x.path, x.into) for x in legacy] == [
        ("/runs/s1", ("",)),
        ("/m/a", None),
        ("/m/b", None),
    ]
