"""Grain input pipelines, one per training objective, yielding dicts of NumPy arrays.

Layout (every objective)::

    MapDataset.range(len(source))  -> seeded shuffle -> repeat(num_epochs, reshuffled per epoch)
      -> [process_index::process_count]                         (sharding by process)
      -> map_with_index(read record, decode/resize images, template + tokenize)   [workers]
      -> to_iter_dataset -> mp_prefetch(num_workers)            (0 workers: in-process)
      -> bad-record accounting (main process: policy, counts, bound)
      -> packing (text; multimodal with layout="packing") | bucketed padding collate
      -> batch -> thread prefetch

Everything up to ``mp_prefetch`` is a pure function of (seed, stream index), so batches are
identical for any number of workers; the stateful steps (accounting, packing, batching) run after
it, in the main process, and their state is in the iterator's ``get_state()`` (JSON-serialisable
dict, what the trainer's orbax checkpoint stores via grain's handler). Augmentation randomness is
drawn from ``(seed, process_index, stream index, image index)``.

Batch keys (B = batch_size per process, L = a length bucket, M = max_images_per_example,
H x W = image size, R = a response-length bucket). Labels follow the HF convention: aligned with
``input_ids``, -100 where no loss is taken (prompt, image tokens, padding); the loss at position t
predicts ``labels[t + 1]``. ``attention_mask`` / ``image_mask`` / ``*_mask`` are int32, 1 = real.

- ``text_sft`` (packed; L = tokenization.max_length, fixed):
  input_ids [B, L] int32, labels [B, L] int32, attention_mask [B, L] int32,
  segment_ids [B, L] int32 (1, 2, ... per packed conversation, 0 = padding),
  positions [B, L] int32 (restart at 0 in each segment).
- ``multimodal_sft`` and ``image_code`` (right-padded to the smallest length bucket):
  input_ids [B, L] int32 (each image is a run of ``image_token_count`` image-token ids, images in
  order), labels [B, L] int32, attention_mask [B, L] int32, positions [B, L] int32 (arange),
  pixel_values [B, M, H, W, 3] float32 (normalised; zeros for missing images),
  image_mask [B, M] int32. With dynamic tiles (InternVL, ``image.resize_mode="dynamic_tiles"``)
  the M slots hold tiles: an image of n tiles (thumbnail included) is n consecutive slots and a
  run of ``n * image_token_count`` image tokens; a record needing more than M tiles is a
  "too_long" record whose message names its tile counts and M.
- ``multimodal_sft`` / ``image_code`` / ``puma_pair`` with ``layout="packing"``: the same keys
  at L = tokenization.max_length, several examples per row, plus ``segment_ids`` [B, L] int32
  (per side for pairs); ``positions`` restart at 0 per segment; M is the image budget per row
  (images in segment order); pairs are packed in lockstep and their response arrays [B, R] hold
  every pair of the row, positions shifted into the packed rows (mathjax_vl.data.packing).
- ``puma_pair``: the keys above for each side with prefixes ``weak_`` (vision-rich, trained) and
  ``strong_`` (text-rich, the target) (each side padded to its own bucket), plus
  weak_response_positions [B, R] int32 and strong_response_positions [B, R] int32: logit positions
  whose next token is the r-th response token, so ``hidden_weak[b, weak_response_positions[b, r]]``
  and ``hidden_strong[b, strong_response_positions[b, r]]`` predict the same token
  ``response_labels[b, r]`` [B, R] int32; response_mask [B, R] int32 (padding rows point at 0).
- ``image_caption`` (CLIP-Math): pixel_values [B, H, W, 3] float32, caption_ids [B, C] int32
  (tokenizer's own special tokens, truncated to C = caption_max_length), caption_mask [B, C] int32.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import grain
import numpy as np

from mathjax_vl.data import bad_records as br
from mathjax_vl.data import packing
from mathjax_vl.data import records as R
from mathjax_vl.data.image_processing import (
    AugmentConfig,
    ImageProcessingConfig,
    example_rng,
    process_image_tiles,
)
from mathjax_vl.data.tokenization import (
    IGNORE_INDEX,
    ConversationTokenizer,
    TokenizationConfig,
    TokenizedSample,
    load_tokenizer,
)

OBJECTIVES = ("text_sft", "multimodal_sft", "puma_pair", "image_caption", "image_code")

# MathCoder-VL's image-to-code prompts (REFERENCE.md section 3).
CODE_PROMPTS = {
    "python": "Please provide the Python code needed to reproduce this image.",
    "tikz": "Please generate the corresponding TikZ code that accurately represents the visual "
    "elements in the image.",
}


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """All knobs of an input pipeline.

    Attributes:
      objective: one of OBJECTIVES.
      batch_size: rows per batch on this process (global batch / process_count).
      seed: shuffle, packing and augmentation seed.
      shuffle: seeded global shuffle of the record order (reshuffled each epoch).
      num_epochs: None repeats forever (training); an int stops after that many passes.
      process_index, process_count: this process's shard (pass jax.process_index()/count()).
      num_workers: Grain worker processes for decode + tokenize (0 = in the main process).
      worker_buffer_size: examples each worker keeps ready.
      read_threads: threads per process (main or worker) running the per-example work; PIL
        decode and HF tokenizers release the GIL, so a few help even in one process.
      read_buffer_examples: examples each process computes ahead (None: 4 x batch_size); at
        384 px an example holds ~1.7 MB of float32 pixels per image.
      prefetch_batches: batches assembled ahead by a thread (0 = none).
      drop_remainder: drop a final partial batch (finite epochs only).
      tokenization: template, image-token count, max length, too-long policy.
      image: resize/normalisation (and augmentation) matching the vision tower.
      bad_records: error / skip policy.
      length_buckets: padded lengths for unpacked rows; () means (tokenization.max_length,).
      response_buckets: padded R of the PUMA response-position arrays (the fused KL loss costs
        B x R); () means length_buckets. A pair with a longer response is a "too_long" record.
      max_images_per_example: M, the image slots per row; an example with more is a
        ``too_long`` record (with packing, M is the row's budget shared by its examples).
      layout: "bucketed" (one example per row, padded to a length bucket) or "packing"
        (several whole examples per row; multimodal_sft, image_code, puma_pair). text_sft is
        always packed.
      packing_window: examples packed together (first-fit decreasing) with layout="packing".
      num_packing_bins: rows the text packer fills concurrently (more = denser, more memory).
      caption_max_length: C for image_caption.
    """

    objective: Literal["text_sft", "multimodal_sft", "puma_pair", "image_caption", "image_code"]
    batch_size: int
    seed: int = 0
    shuffle: bool = True
    num_epochs: int | None = None
    process_index: int = 0
    process_count: int = 1
    num_workers: int = 0
    worker_buffer_size: int = 2
    read_threads: int = 2
    read_buffer_examples: int | None = None
    prefetch_batches: int = 2
    drop_remainder: bool = True
    tokenization: TokenizationConfig = dataclasses.field(default_factory=TokenizationConfig)
    image: ImageProcessingConfig = dataclasses.field(default_factory=ImageProcessingConfig)
    bad_records: br.BadRecordConfig = dataclasses.field(default_factory=br.BadRecordConfig)
    length_buckets: tuple[int, ...] = ()
    response_buckets: tuple[int, ...] = ()
    max_images_per_example: int = 1
    num_packing_bins: int = 8
    caption_max_length: int = 77
    layout: Literal["bucketed", "packing"] = "bucketed"
    packing_window: int = 64

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.process_index < self.process_count:
            raise ValueError(
                f"process_index {self.process_index} not in [0, process_count={self.process_count})"
            )
        if self.buckets[-1] < self.tokenization.max_length:
            raise ValueError(
                f"largest length bucket {self.buckets[-1]} < tokenization.max_length "
                f"{self.tokenization.max_length}: some rows could not be padded"
            )
        if self.max_images_per_example < 1:
            raise ValueError("max_images_per_example must be >= 1")
        if self.layout not in ("bucketed", "packing"):
            raise ValueError(f"layout must be 'bucketed' or 'packing', got {self.layout!r}")
        if self.layout == "packing" and self.objective == "image_caption":
            raise ValueError("layout='packing' does not apply to image_caption (no token rows)")

    @property
    def buckets(self) -> tuple[int, ...]:
        return tuple(sorted(self.length_buckets)) or (self.tokenization.max_length,)

    @property
    def r_buckets(self) -> tuple[int, ...]:
        return tuple(sorted(self.response_buckets)) or self.buckets


def pipeline_config_from_dict(d: Mapping[str, Any]) -> PipelineConfig:
    """A PipelineConfig from plain data (a dict or ml_collections.ConfigDict, e.g. ``config.data``).

    Nested ``tokenization``, ``image`` (with optional ``augment``) and ``bad_records`` mappings
    become their dataclasses; lists become tuples; unknown keys are an error naming them.
    """
    d = _plain(d)
    nested = {
        "tokenization": TokenizationConfig,
        "image": ImageProcessingConfig,
        "bad_records": br.BadRecordConfig,
    }
    for key, cls in nested.items():
        if key in d and isinstance(d[key], Mapping):
            sub = {
                k: tuple(v) if isinstance(v, list) else v for k, v in dict(d[key].items()).items()
            }
            if cls is ImageProcessingConfig and isinstance(sub.get("augment"), Mapping):
                aug = {k: tuple(v) for k, v in dict(sub["augment"].items()).items()}
                sub["augment"] = AugmentConfig(**aug)
            _check_keys(cls, sub, key)
            d[key] = cls(**sub)
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    _check_keys(PipelineConfig, d, "pipeline")
    return PipelineConfig(**d)


def _plain(x: Any) -> Any:
    """ConfigDict (not a Mapping) / dict -> nested plain dicts."""
    if isinstance(x, Mapping) or hasattr(x, "to_dict"):
        x = x.to_dict() if hasattr(x, "to_dict") else x
        return {k: _plain(v) for k, v in x.items()}
    return x


def _check_keys(cls: type, d: Mapping[str, Any], where: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(
            f"{where} config: unknown keys {unknown}; expected some of {sorted(known)}"
        )


# ------------------------------------------------------------------ per-example work (workers)

_INIT_LOCK = threading.Lock()


def _source_name(source: Any) -> str:
    if hasattr(source, "dataset_dir"):
        return f"{source.dataset_dir}[{getattr(source, 'split', '?')}]"
    return f"<{type(source).__name__}>"


class ExampleProcessor(grain.transforms.MapWithIndex):
    """(stream index, record index) -> example dict, or a bad-record marker.

    Reads the record itself (so a record that fails validation at read time is handled by the
    bad-record policy too) and is picklable: the source and tokenizer reopen in each worker.
    """

    def __init__(self, source: Sequence[Any], cfg: PipelineConfig, tokenizer_dir: str) -> None:
        self.source = source
        self.cfg = cfg
        self.tokenizer_dir = str(tokenizer_dir)
        self.source_name = _source_name(source)
        self._tokenizer: ConversationTokenizer | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tokenizer"] = None
        return state

    @property
    def tokenizer(self) -> ConversationTokenizer:
        if self._tokenizer is None:
            with _INIT_LOCK:  # Grain's read threads may all get here first
                if self._tokenizer is None:
                    self._tokenizer = ConversationTokenizer(
                        self.tokenizer_dir, self.cfg.tokenization
                    )
        return self._tokenizer

    def map_with_index(self, stream_index: int, record_index: Any) -> dict[str, Any]:
        record_index = int(record_index)
        try:
            record = self.source[record_index]
            if isinstance(record, dict):
                record = R.record_from_dict(record, self.source_name, record_index)
            return self.process(record, record_index, stream_index)
        except R.RecordError as err:
            return br.make_marker(err)

    # Objectives ------------------------------------------------------------------------

    def process(self, record: Any, index: int, stream_index: int) -> dict[str, Any]:
        objective = self.cfg.objective
        expected = {
            "text_sft": (R.TextConversation, R.MultimodalConversation),
            "multimodal_sft": (R.MultimodalConversation, R.TextConversation),
            "puma_pair": (R.PumaPair,),
            "image_caption": (R.ImageCaption,),
            "image_code": (R.ImageCode,),
        }[objective]
        if not isinstance(record, expected):
            raise R.RecordError(
                self.source_name,
                index,
                "bad_value",
                f"objective {objective!r} expects {[t.kind for t in expected]}, found "
                f"{type(record).__name__}",
            )
        if objective == "text_sft":
            if getattr(record, "images", ()):
                raise R.RecordError(
                    self.source_name, index, "bad_value", "text_sft got a record with images"
                )
            sample = self._tokenize(record.turns, 0, index)
            return {"input_ids": sample.input_ids, "labels": sample.labels}
        if objective == "multimodal_sft":
            images = getattr(record, "images", ())
            return self._conversation(record.turns, images, index, stream_index, "")
        if objective == "image_code":
            prompt = f"{R.IMAGE_PLACEHOLDER}\n{CODE_PROMPTS[record.language]}"
            turns = (R.Turn("user", prompt), R.Turn("assistant", record.code))
            return self._conversation(turns, (record.image,), index, stream_index, "")
        if objective == "puma_pair":
            return self._pair(record, index, stream_index)
        return self._caption(record, index, stream_index)

    def _tokenize(
        self, turns: Sequence[R.Turn], n_images: int, index: int, tiles: Sequence[int] | None = None
    ) -> TokenizedSample:
        messages = [{"role": t.role, "content": t.content} for t in turns]
        return self.tokenizer.tokenize(
            messages, n_images, source=self.source_name, index=index, image_tiles=tiles
        )

    def _images(
        self, images: Sequence[bytes], index: int, stream_index: int, side: int
    ) -> tuple[np.ndarray, list[int]]:
        """([n_tiles, H, W, 3] float32, tiles per image); without dynamic tiles an image is one
        tile. Tiles count against max_images_per_example (the row's compiled image budget)."""
        cfg = self.cfg
        if len(images) > cfg.max_images_per_example:
            raise R.RecordError(
                self.source_name,
                index,
                "too_long",
                f"{len(images)} images > max_images_per_example {cfg.max_images_per_example} "
                "(the image budget of a row)",
            )
        tiles = []
        for k, data in enumerate(images):
            rng = example_rng(cfg.seed, cfg.process_index, stream_index, side, k)
            tiles.append(
                process_image_tiles(data, cfg.image, rng=rng, source=self.source_name, index=index)
            )
        counts = [len(t) for t in tiles]
        if sum(counts) > cfg.max_images_per_example:
            raise R.RecordError(
                self.source_name,
                index,
                "too_long",
                f"{len(images)} image(s) give {sum(counts)} tiles {counts} (max_tiles "
                f"{cfg.image.max_tiles}, thumbnail {cfg.image.use_thumbnail}) > "
                f"max_images_per_example {cfg.max_images_per_example} (the compiled image budget "
                "of a row; each tile is one image slot)",
            )
        shape = (0, cfg.image.height, cfg.image.width, 3)
        return (np.concatenate(tiles) if tiles else np.zeros(shape, np.float32)), counts

    def _conversation(
        self,
        turns: Sequence[R.Turn],
        images: Sequence[bytes],
        index: int,
        stream_index: int,
        prefix: str,
        side: int = 0,
    ) -> dict[str, Any]:
        tiled = self.cfg.image.tiles_images
        if tiled:  # token counts follow the tiles, so the images come first
            pixels, counts = self._images(images, index, stream_index, side)
            sample = self._tokenize(turns, len(images), index, counts)
            pixels = pixels[: sum(counts[: sample.num_images])]
        else:
            sample = self._tokenize(turns, len(images), index)
            # Truncation may drop trailing images: keep the pixels of the images still referenced.
            pixels, _ = self._images(images[: sample.num_images], index, stream_index, side)
        return {
            f"{prefix}input_ids": sample.input_ids,
            f"{prefix}labels": sample.labels,
            f"{prefix}pixel_values": pixels,
        }

    def _pair(self, pair: R.PumaPair, index: int, stream_index: int) -> dict[str, Any]:
        out = {}
        for side_id, (prefix, side) in enumerate(
            (("weak_", "vision_rich"), ("strong_", "text_rich"))
        ):
            conv = pair.side_conversation(side)
            out.update(
                self._conversation(conv.turns, conv.images, index, stream_index, prefix, side_id)
            )
        weak_labels, strong_labels = out["weak_labels"], out["strong_labels"]
        weak_pos = np.flatnonzero(weak_labels[1:] != IGNORE_INDEX).astype(np.int32)
        strong_pos = np.flatnonzero(strong_labels[1:] != IGNORE_INDEX).astype(np.int32)
        weak_tokens = weak_labels[weak_pos + 1]
        strong_tokens = strong_labels[strong_pos + 1]
        n = min(len(weak_pos), len(strong_pos))  # truncation may shorten one side's response
        if not np.array_equal(weak_tokens[:n], strong_tokens[:n]) or (
            len(weak_pos) != len(strong_pos) and self.cfg.tokenization.too_long != "truncate"
        ):
            raise R.RecordError(
                self.source_name,
                index,
                "pair_mismatch",
                f"the two sides' response tokens differ ({len(weak_pos)} vs {len(strong_pos)} "
                "tokens): positions cannot be aligned",
            )
        if n == 0:
            raise R.RecordError(self.source_name, index, "too_long", "no aligned response left")
        if n > self.cfg.r_buckets[-1]:
            raise R.RecordError(
                self.source_name,
                index,
                "too_long",
                f"response of {n} tokens > largest response bucket {self.cfg.r_buckets[-1]}",
            )
        out["weak_response_positions"] = weak_pos[:n]
        out["strong_response_positions"] = strong_pos[:n]
        out["response_labels"] = weak_tokens[:n].astype(np.int32)
        return out

    def _caption(self, rec: R.ImageCaption, index: int, stream_index: int) -> dict[str, Any]:
        tok = load_tokenizer(self.tokenizer_dir)
        ids = tok(
            rec.caption,
            add_special_tokens=True,
            truncation=True,
            max_length=self.cfg.caption_max_length,
        )["input_ids"]
        pixels = self._images((rec.image,), index, stream_index, 0)[0][0]
        return {"pixel_values": pixels, "caption_ids": np.asarray(ids, np.int32)}


# ------------------------------------------------------------------ batching (main process)


class Collate:
    """Pads a list of examples into one batch dict (see the module docstring for keys)."""

    def __init__(self, cfg: PipelineConfig, pad_token_id: int) -> None:
        self.cfg = cfg
        self.pad_token_id = pad_token_id

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        if self.cfg.objective == "image_caption":
            return self._captions(examples)
        if self.cfg.objective == "puma_pair":
            out = {}
            for prefix in ("weak_", "strong_"):
                out.update(self._rows(examples, prefix))
            r = packing.bucket_length(
                max(len(e["weak_response_positions"]) for e in examples), self.cfg.r_buckets
            )
            out["weak_response_positions"] = packing.pad_1d(
                [e["weak_response_positions"] for e in examples], r, 0
            )
            out["strong_response_positions"] = packing.pad_1d(
                [e["strong_response_positions"] for e in examples], r, 0
            )
            out["response_labels"] = packing.pad_1d(
                [e["response_labels"] for e in examples], r, IGNORE_INDEX
            )
            out["response_mask"] = packing.pad_1d(
                [np.ones(len(e["response_labels"]), np.int32) for e in examples], r, 0
            )
            return out
        return self._rows(examples, "")

    def _rows(self, examples: Sequence[dict[str, Any]], prefix: str) -> dict[str, np.ndarray]:
        cfg = self.cfg
        ids = [e[f"{prefix}input_ids"] for e in examples]
        length = packing.bucket_length(max(len(x) for x in ids), cfg.buckets)
        b, m = len(examples), cfg.max_images_per_example
        pixels = np.zeros((b, m, cfg.image.height, cfg.image.width, 3), np.float32)
        image_mask = np.zeros((b, m), np.int32)
        for i, e in enumerate(examples):
            p = e[f"{prefix}pixel_values"]  # [n_i, H, W, 3]
            pixels[i, : len(p)] = p
            image_mask[i, : len(p)] = 1
        return {
            f"{prefix}input_ids": packing.pad_1d(ids, length, self.pad_token_id),
            f"{prefix}labels": packing.pad_1d(
                [e[f"{prefix}labels"] for e in examples], length, IGNORE_INDEX
            ),
            f"{prefix}attention_mask": packing.pad_1d(
                [np.ones(len(x), np.int32) for x in ids], length, 0
            ),
            f"{prefix}positions": np.broadcast_to(
                np.arange(length, dtype=np.int32), (b, length)
            ).copy(),
            f"{prefix}pixel_values": pixels,
            f"{prefix}image_mask": image_mask,
        }

    def _captions(self, examples: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        c = self.cfg.caption_max_length
        ids = [e["caption_ids"] for e in examples]
        return {
            "pixel_values": np.stack([e["pixel_values"] for e in examples]).astype(np.float32),
            "caption_ids": packing.pad_1d(ids, c, self.pad_token_id),
            "caption_mask": packing.pad_1d([np.ones(len(x), np.int32) for x in ids], c, 0),
        }


# ------------------------------------------------------------------ assembly


@dataclasses.dataclass
class Pipeline:
    """A Grain IterDataset of batches plus the bad-record tracker its accounting step updates.

    ``iter(pipeline)`` gives a checkpointable iterator (``get_state`` / ``set_state``; JSON-safe
    state). Read ``pipeline.metrics()`` for the bad-record counters and call
    ``pipeline.finalize()`` at the end of training for the report and the final bound check.
    One live iterator per pipeline (the tracker is shared). With ``prefetch_batches`` > 0 the
    counters include batches prefetched but not yet consumed; the checkpointed state does not.
    """

    dataset: grain.IterDataset
    tracker: br.BadRecordTracker
    config: PipelineConfig
    packer: packing.PackExamplesIterDataset | None = None

    def __iter__(self) -> grain.DatasetIterator:
        return iter(self.dataset)

    def metrics(self) -> dict[str, float]:
        """Bad-record counters, plus the packer's fill (packing/*) with layout="packing"."""
        out = self.tracker.metrics()
        if self.packer is not None:
            out.update(self.packer.stats().metrics())
        return out

    def finalize(self) -> str:
        return self.tracker.finalize()


def build_pipeline(source: Sequence[Any], config: PipelineConfig, tokenizer_dir: str) -> Pipeline:
    """The pipeline for ``config.objective`` over a random-access record source.

    ``source``: ``mathjax_vl.data.storage.open_source(dir, split)`` or any sequence of records
    (or record dicts). ``tokenizer_dir``: a local HF tokenizer directory.
    """
    cfg = config
    n = len(source)
    if n == 0:
        raise ValueError(f"{_source_name(source)} is empty")
    ds = grain.MapDataset.range(n)
    if cfg.shuffle:
        ds = ds.shuffle(seed=cfg.seed)
    ds = ds.repeat(cfg.num_epochs)
    ds = ds[cfg.process_index :: cfg.process_count]
    processor = ExampleProcessor(source, cfg, tokenizer_dir)
    ds = ds.map_with_index(processor)
    ahead = cfg.read_buffer_examples if cfg.read_buffer_examples is not None else 4 * cfg.batch_size
    read = grain.ReadOptions(num_threads=cfg.read_threads, prefetch_buffer_size=ahead)
    it = br.mp_prefetch(ds.to_iter_dataset(read), cfg.num_workers, cfg.worker_buffer_size)
    tracker = br.BadRecordTracker(cfg.bad_records, name=f"{cfg.objective}:{_source_name(source)}")
    it = br.BadRecordAccountingIterDataset(it, tracker)
    if cfg.objective == "image_caption":  # a CLIP text tokenizer has no chat/image tokens
        pad_id = load_tokenizer(str(tokenizer_dir)).pad_token_id or 0
    else:
        pad_id = processor.tokenizer.pad_token_id
    packer = None
    if cfg.objective == "text_sft":
        it = packing.pack_rows(
            it, cfg.tokenization.max_length, pad_id, cfg.num_packing_bins, cfg.seed
        )
        it = it.batch(cfg.batch_size, drop_remainder=cfg.drop_remainder)
    elif cfg.layout == "packing":
        pairs = cfg.objective == "puma_pair"
        spec = packing.PackSpec(
            sides=("weak_", "strong_") if pairs else ("",),
            seq_len=cfg.tokenization.max_length,
            max_images=cfg.max_images_per_example,
            image_shape=(cfg.image.height, cfg.image.width, 3),
            pad_token_id=pad_id,
            response_len=cfg.r_buckets[-1] if pairs else 0,
        )
        it = packer = packing.PackExamplesIterDataset(it, spec, cfg.packing_window)
        it = it.batch(cfg.batch_size, drop_remainder=cfg.drop_remainder)
    else:
        it = it.batch(
            cfg.batch_size, drop_remainder=cfg.drop_remainder, batch_fn=Collate(cfg, pad_id)
        )
    if cfg.prefetch_batches > 0:
        it = grain.experimental.ThreadPrefetchIterDataset(
            it, prefetch_buffer_size=cfg.prefetch_batches
        )
    return Pipeline(dataset=it, tracker=tracker, config=cfg, packer=packer)
