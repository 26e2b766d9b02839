"""One module per objective: its one name (and older aliases) resolves the same objective for
task.name, data.objective and the pipeline; its declared batch keys are what the task compiles,
what its synthetic example and pipeline produce, and any difference is an error naming the key
and the objective. No model is initialised here (task construction and NumPy only)."""

from pathlib import Path

import numpy as np
import pytest

from mathjax_vl.data import pipelines as P
from mathjax_vl.data import records as R
from mathjax_vl.data.batch_keys import BatchKey, BatchKeyError
from mathjax_vl.errors import ConfigError
from mathjax_vl.train import data as data_lib
from mathjax_vl.train import tasks
from mathjax_vl.train.config_loader import load_config

CONFIGS = Path(__file__).parents[2] / "configs"
TINY = {
    "tiny_text_sft.py": "text_sft",
    "tiny_multimodal_sft.py": "multimodal_sft",
    "tiny_puma_kl.py": "puma_kl",
    "tiny_contrastive.py": "contrastive",
    "tiny_image_to_code.py": "image_to_code",
}


def _config(name, *overrides):
    return load_config(str(CONFIGS / name), list(overrides))


def test_every_registered_module_declares_its_own_name():
    assert tasks.names() == sorted(
        ["text_sft", "multimodal_sft", "puma_kl", "contrastive", "image_to_code"]
    )
    for name in tasks.names():
        objective = tasks.get(name)
        assert objective.name == objective.data.name == name
        assert objective.data.record_types and objective.model_roles


@pytest.mark.parametrize("file", sorted(TINY))
def test_task_batch_is_the_declaration(file):
    """batch_spec, the synthetic example and the pipeline check all read one declaration."""
    task = tasks.build_task(_config(file))
    assert task.name == TINY[file]
    keys, spec = task.batch_keys(), task.batch_spec(3)
    assert set(spec) == set(keys)
    source = data_lib.SyntheticExamples(task, 4, seed=0)
    example = source[1]
    assert set(example) == set(keys)
    for k, s in spec.items():
        assert example[k].shape == s.shape[1:], k
        assert example[k].dtype == s.dtype, k


def test_declared_shapes_match_the_model():
    task = tasks.build_task(_config("tiny_puma_kl.py", "--config.data.response_len=8"))
    spec = task.batch_spec(2)
    size = task.vlm_cfg.vision.image_size
    t = task.seq_len
    assert spec["weak_pixel_values"].shape == (2, task.max_images, size, size, 3)
    assert spec["strong_input_ids"].shape == (2, t)
    assert spec["response_labels"].shape == spec["weak_response_positions"].shape == (2, 8)
    assert task.batch_keys()["response_labels"].pad == -100
    assert task.batch_keys()["strong_labels"].pad == -100
    packed = tasks.build_task(_config("tiny_multimodal_sft.py", "--config.data.layout=packing"))
    assert "segment_ids" in packed.batch_spec(2)
    assert "segment_ids" not in tasks.build_task(_config("tiny_multimodal_sft.py")).batch_spec(2)
    clip = tasks.build_task(_config("tiny_contrastive.py"))
    assert clip.batch_spec(2)["caption_ids"].shape == (2, clip.caption_len)


def test_older_names_resolve_to_one_objective():
    text = _config("tiny_text_sft.py")
    vlm = _config("tiny_multimodal_sft.py")
    for config, name in ((text, "text_sft"), (vlm, "multimodal_sft")):
        config.task.name = "sft"  # the older shared name: the model's role decides
        assert tasks.resolve(config).name == name
        config.data.objective = "multimodal_sft"  # the older data name fed text to a decoder
        assert tasks.resolve(config).name == name
    pairs = _config("tiny_puma_kl.py")
    pairs.data.objective = "puma_pair"
    assert tasks.resolve(pairs).name == "puma_kl"
    pairs.data.objective = "multimodal_sft"
    with pytest.raises(ConfigError, match="data.objective 'multimodal_sft' and task.name"):
        tasks.resolve(pairs)
    clip = _config("tiny_contrastive.py")
    clip.task.name = "puma_kl"
    with pytest.raises(ConfigError, match="'puma_kl' trains \\['composite'\\] models"):
        tasks.resolve(clip)
    clip.task.name = "nope"
    with pytest.raises(ConfigError, match="unknown task.name 'nope'"):
        tasks.resolve(clip)
    for alias, name in (("puma_pair", "puma_kl"), ("image_caption", "contrastive")):
        assert tasks.pipeline_objective(alias).name == name
    assert tasks.pipeline_objective("image_code").name == "image_to_code"


def test_synthetic_example_with_an_undeclared_key_names_it_and_the_objective():
    task = tasks.build_task(_config("tiny_text_sft.py"))
    make = task.synthetic_example
    task.synthetic_example = lambda rng: {**make(rng), "chosen_labels": np.zeros(3, np.int32)}
    with pytest.raises(
        BatchKeyError,
        match="objective 'text_sft': synthetic example produces "
        "undeclared keys \\['chosen_labels'\\]",
    ):
        data_lib.SyntheticExamples(task, 2, seed=0)[0]

    def dropped(rng):
        row = make(rng)
        row.pop("labels")
        return row

    task.synthetic_example = dropped
    with pytest.raises(BatchKeyError, match="declares keys it did not produce \\['labels'\\]"):
        data_lib.SyntheticExamples(task, 2, seed=0)[0]


class _ToyData(P.ObjectiveData):
    """A caption-like objective whose collate can add or drop a key (no tokenizer needed)."""

    name = "toy"
    record_types = (R.ImageCaption,)

    def __init__(self, extra: str = "", drop: str = ""):
        self.extra, self.drop = extra, drop

    def pad_token_id(self, ex):
        return 0

    def process(self, ex, record, index, stream_index):
        return {"caption_ids": np.arange(1, 1 + len(record.caption.split()), dtype=np.int32)}

    def batch_keys(self, layout):
        return {
            "caption_ids": BatchKey(("C",), np.int32, 0),
            "chosen_labels": BatchKey(("C",), np.int32, -100),
        }

    def collate(self, examples, cfg, pad_token_id):
        ids = [e["caption_ids"] for e in examples]
        out = {
            "caption_ids": P.packing.pad_1d(ids, 8, pad_token_id),
            "chosen_labels": P.packing.pad_1d(ids, 8, -100),
        }
        if self.extra:
            out[self.extra] = out["caption_ids"]
        out.pop(self.drop, None)
        return out


PNG = R.encode_png(np.zeros((4, 4, 3), np.uint8))


def _toy_batches(objective):
    recs = [R.ImageCaption(image=PNG, caption="a b c"), R.ImageCaption(image=PNG, caption="d e")]
    cfg = P.PipelineConfig(objective="toy", batch_size=2, shuffle=False, num_epochs=1)
    return list(P.build_pipeline(recs, cfg, "/nonexistent", objective))


def test_pipeline_batch_keys_are_checked_against_the_declaration():
    (batch,) = _toy_batches(_ToyData())
    np.testing.assert_array_equal(batch["chosen_labels"][1], [1, 2] + [-100] * 6)
    with pytest.raises(BatchKeyError) as err:
        _toy_batches(_ToyData(extra="rejected_labels"))
    assert "objective 'toy': pipeline batch produces undeclared keys ['rejected_labels']" in str(
        err.value
    )
    with pytest.raises(BatchKeyError, match="'toy'.*did not produce \\['chosen_labels'\\]"):
        _toy_batches(_ToyData(drop="chosen_labels"))
    with pytest.raises(ValueError, match="supports layouts \\['bucketed'\\], not 'packing'"):
        recs = [R.ImageCaption(image=PNG, caption="a")]
        cfg = P.PipelineConfig(objective="toy", batch_size=1, layout="packing")
        P.build_pipeline(recs, cfg, "/nonexistent", _ToyData())


def test_every_training_recipe_is_named_by_the_objective_it_feeds():
    from mathjax_vl.datagen import beam, engine

    training = [r for r in engine.RECIPES if r != "mathverse_eval"]  # eval problems: no task
    assert sorted(training) == sorted(set(tasks.names()) - {"text_sft"})
    for recipe in training:
        kinds = [t.kind for t in tasks.get(recipe).data.record_types]
        assert beam.RECIPE_KINDS[recipe] in kinds, recipe
    for old, new in engine.RECIPE_ALIASES.items():
        assert engine.DatagenConfig(recipe=old, n=1).recipe == new
