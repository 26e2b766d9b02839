"""The real input pipelines (mathjax_vl.data.pipelines) as the trainer's iterator.

config.data (kind = "pipeline"): dataset (a TFDS dataset dir written by mathjax_vl.data.storage),
split, tokenizer_dir, num_workers, seed, too_long, bad_records ({policy, max_skipped_fraction,
...}); the objective is the task's (its `data` half, named by task.name);
image size / mean / std come from the vision tower's config and the image-token count from the
VLM; layout ("bucketed" | "packing") and packing_window choose the multimodal row layout. The
pipeline pads to length buckets (or packs rows of seq_len); the trainer compiles one
step for the task's fixed shapes, so every batch is padded here up to those shapes with each
key's declared pad value (mathjax_vl.data.batch_keys; never cut: a longer batch is an error
naming the key, and a key the objective does not declare is an error too). The iterator state
is the pipeline's, so checkpoints resume the data exactly.
"""

from __future__ import annotations

from typing import Any

import ml_collections
import numpy as np

from mathjax_vl.data.batch_keys import pad_batch
from mathjax_vl.errors import ConfigError
from mathjax_vl.train.tasks.base import Task


def pad_to_spec(batch: dict[str, np.ndarray], task: Task, local_batch: int) -> dict:
    """Pad every array of `batch` up to the task's compiled shapes, from its declared keys."""
    return pad_batch(batch, task.batch_keys(), task.dims(), local_batch, task.name)


class PaddedIterator:
    """Wraps a pipeline's Grain iterator: pads batches, forwards get_state/set_state."""

    def __init__(self, inner, task: Task, local_batch: int, pipeline=None):
        self._inner = inner
        self._task = task
        self._local_batch = local_batch
        self.pipeline = pipeline

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        return pad_to_spec(next(self._inner), self._task, self._local_batch)

    def get_state(self):
        return self._inner.get_state()

    def set_state(self, state) -> None:
        self._inner.set_state(state)


def _check_image_token(model_id: int, cfg, tokenizer_dir: str) -> None:
    """The model's image-token id must be the tokenizer's image token, else images vanish."""
    from mathjax_vl.data.tokenization import ConversationTokenizer

    token_id = ConversationTokenizer(tokenizer_dir, cfg.tokenization).image_token_id
    if token_id != model_id:
        raise ConfigError(
            f"model.image_token_id = {model_id} but the tokenizer in {tokenizer_dir} maps "
            f"{cfg.tokenization.image_token!r} to {token_id}"
        )


def _model_vocab(task: Task) -> int | None:
    if hasattr(task, "vlm_cfg"):
        return task.vlm_cfg.text.vocab_size
    if hasattr(task, "clip_cfg"):
        return task.clip_cfg.text.vocab_size
    if hasattr(task, "model_cfg"):
        return task.model_cfg.vocab_size
    return None


def _check_vocab(task: Task, tokenizer_dir: str) -> None:
    """Token ids past the embedding table give NaN (an out-of-range gather), not an error."""
    from mathjax_vl.data.tokenization import load_tokenizer

    vocab = _model_vocab(task)
    size = len(load_tokenizer(tokenizer_dir))
    if vocab is not None and size > vocab:
        raise ConfigError(
            f"the tokenizer in {tokenizer_dir} has {size} tokens but the model's vocab_size is "
            f"{vocab}; set the model's vocab_size to at least {size}"
        )


def build(
    config: ml_collections.ConfigDict,
    task: Task,
    process_index: int,
    process_count: int,
    local_batch: int,
) -> PaddedIterator:
    from mathjax_vl.data import pipelines, storage
    from mathjax_vl.data.bad_records import BadRecordConfig
    from mathjax_vl.data.image_processing import ImageProcessingConfig
    from mathjax_vl.data.tokenization import TokenizationConfig

    d = config.data
    for field in ("dataset", "tokenizer_dir"):
        if not d.get(field):
            raise ConfigError(f"data.kind='pipeline' needs data.{field} (it is empty)")
    seq_len = int(d.seq_len)
    kwargs: dict[str, Any] = {}
    vlm = getattr(task, "vlm_cfg", None)
    if vlm is not None:
        from mathjax_vl.train.tasks.vlm_common import image_inputs

        extra = sorted(set(image_inputs(vlm)) - {"pixel_values"})
        if extra:  # the hybrid's second view (data.tower_images.preprocess_deepseek)
            raise ConfigError(
                f"model.kind {config.model.kind!r} takes per-image inputs {extra} besides "
                "pixel_values, which data.kind='pipeline' does not produce yet; train it with "
                "data.kind='synthetic' (docs/notes/deepseek_vl.md)"
            )
        kwargs["image"] = ImageProcessingConfig.for_tower(vlm.vision)
        image_tokens = vlm.image_seq_length
    else:
        image_tokens = 1
    dims = task.dims()
    if "R" in dims:  # response arrays are bucketed to the task's R, not seq_len
        kwargs["response_buckets"] = (int(dims["R"]),)
    if "C" in dims:
        kwargs["caption_max_length"] = int(dims["C"])
    if hasattr(task, "clip_cfg"):
        kwargs["image"] = ImageProcessingConfig.for_tower(task.clip_cfg.vision)
    if d.get("bad_records"):  # e.g. {"policy": "skip", "max_skipped_fraction": 0.01}
        kwargs["bad_records"] = BadRecordConfig(**dict(d.bad_records))
    cfg = pipelines.PipelineConfig(
        objective=task.data.name,
        batch_size=local_batch,
        seed=int(d.get("seed", config.seed)),
        process_index=process_index,
        process_count=process_count,
        num_workers=int(d.get("num_workers", 0)),
        tokenization=TokenizationConfig(
            max_length=seq_len,
            image_token_count=image_tokens,
            too_long=d.get("too_long", "reject"),
        ),
        length_buckets=(seq_len,),
        max_images_per_example=int(d.get("max_images", 1)),
        layout=task.layout,
        packing_window=int(d.get("packing_window", 64)),
        **kwargs,
    )
    source = storage.open_source(d.dataset, d.get("split", "train"))
    pipeline = pipelines.build_pipeline(source, cfg, d.tokenizer_dir, task.data)
    if vlm is not None:
        _check_image_token(vlm.image_token_id, cfg, d.tokenizer_dir)
    _check_vocab(task, d.tokenizer_dir)
    return PaddedIterator(iter(pipeline), task, local_batch, pipeline)
