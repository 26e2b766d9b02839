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

The objective is an ``ObjectiveData`` (declared in its objective module,
mathjax_vl.train.tasks.<name>): it says which record types it takes, turns one record into an
example (``process``, using this module's tokenize / image helpers), batches examples
(``collate``, or packing) and declares every batch key with its shape, dtype and pad value
(mathjax_vl.data.batch_keys); every batch is checked against that declaration. Labels follow
the HF convention: aligned with ``input_ids``, -100 where no loss is taken (prompt, image
tokens, padding); the loss at position t predicts ``labels[t + 1]``. ``attention_mask`` /
``image_mask`` / ``*_mask`` are int32, 1 = real. With dynamic tiles (InternVL,
``image.resize_mode="dynamic_tiles"``) the M image slots hold tiles: an image of n tiles
(thumbnail included) is n consecutive slots and a run of ``n * image_token_count`` image tokens;
a record needing more than M tiles is a "too_long" record naming its tile counts and M.
"""

from __future__ import annotations

import abc
import dataclasses
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import grain
import numpy as np

from mathjax_vl.data import bad_records as br
from mathjax_vl.data import packing
from mathjax_vl.data import records as R
from mathjax_vl.data.batch_keys import ARANGE, BatchKey, check_keys
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
)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """All knobs of an input pipeline.

    Attributes:
      objective: the objective's name (mathjax_vl.train.tasks lists them; the ObjectiveData
        handed to build_pipeline must carry this name).
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

    objective: str
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
        if not self.objective:
            raise ValueError("objective must name an objective (e.g. 'multimodal_sft')")
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


# ------------------------------------------------------------------ the objective's data half


class ObjectiveData(abc.ABC):
    """What an objective needs from the input pipeline, declared in its objective module.

    Subclasses set ``name`` (the objective's one name), ``record_types`` and implement
    ``process``, ``batch_keys`` and ``collate``. Instances are pickled into Grain workers, so
    they hold no model or device state.
    """

    name: str = ""
    record_types: tuple[type, ...] = ()
    # row layouts this objective's examples support ("packing": several whole examples per row)
    layouts: tuple[str, ...] = ("bucketed",)
    pack_sides: tuple[str, ...] = ("",)  # key prefixes packed in lockstep (layout="packing")
    pack_response: bool = False  # pairs: aligned response arrays packed with the sides

    @abc.abstractmethod
    def process(
        self, ex: ExampleProcessor, record: Any, index: int, stream_index: int
    ) -> dict[str, Any]:
        """One record (already of one of ``record_types``) -> one example dict (no batch axis);
        raise ``records.RecordError`` for a record the objective cannot use."""

    @abc.abstractmethod
    def batch_keys(self, layout: str) -> dict[str, BatchKey]:
        """Every key of a batch in ``layout`` with its shape after the batch axis (symbols: L
        tokens, M image slots, H/W image size, R response slots, C caption tokens), dtype and pad
        value. The pipeline checks each batch against it; the trainer pads and compiles from it."""

    @abc.abstractmethod
    def collate(
        self, examples: Sequence[dict[str, Any]], cfg: PipelineConfig, pad_token_id: int
    ) -> dict[str, np.ndarray]:
        """Examples -> one padded batch (layout="bucketed")."""

    def resolve_layout(self, requested: str) -> str:
        """The layout this objective's pipeline will produce for a requested one."""
        if requested not in self.layouts:
            raise ValueError(
                f"objective {self.name!r} supports layouts {list(self.layouts)}, not {requested!r}"
            )
        return requested

    def pad_token_id(self, ex: ExampleProcessor) -> int:
        return ex.tokenizer.pad_token_id

    def batch(
        self, it: grain.IterDataset, cfg: PipelineConfig, pad_token_id: int
    ) -> tuple[grain.IterDataset, packing.PackExamplesIterDataset | None]:
        """Examples -> batches: whole-example packing (layout="packing") or ``collate``."""
        if self.resolve_layout(cfg.layout) == "packing":
            spec = packing.PackSpec(
                sides=self.pack_sides,
                seq_len=cfg.tokenization.max_length,
                max_images=cfg.max_images_per_example,
                image_shape=(cfg.image.height, cfg.image.width, 3),
                pad_token_id=pad_token_id,
                response_len=cfg.r_buckets[-1] if self.pack_response else 0,
            )
            packer = packing.PackExamplesIterDataset(it, spec, cfg.packing_window)
            return packer.batch(cfg.batch_size, drop_remainder=cfg.drop_remainder), packer
        collate = _Collate(self, cfg, pad_token_id)
        return it.batch(cfg.batch_size, drop_remainder=cfg.drop_remainder, batch_fn=collate), None


class _Collate:
    def __init__(self, objective: ObjectiveData, cfg: PipelineConfig, pad_token_id: int) -> None:
        self.objective, self.cfg, self.pad_token_id = objective, cfg, pad_token_id

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        return self.objective.collate(examples, self.cfg, self.pad_token_id)


class _CheckKeys(grain.transforms.Map):
    """Every batch holds exactly the declared keys (an error names the key and the objective)."""

    def __init__(self, objective: str, declared: Sequence[str]) -> None:
        self.objective, self.declared = objective, tuple(declared)

    def map(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_keys(self.objective, self.declared, batch, "pipeline batch")
        return batch


# ------------------------------------------------------------------ per-example work (workers)

_INIT_LOCK = threading.Lock()


def _source_name(source: Any) -> str:
    if hasattr(source, "dataset_dir"):
        return f"{source.dataset_dir}[{getattr(source, 'split', '?')}]"
    return f"<{type(source).__name__}>"


class ExampleProcessor(grain.transforms.MapWithIndex):
    """(stream index, record index) -> example dict, or a bad-record marker.

    Reads the record itself (so a record that fails validation at read time is handled by the
    bad-record policy too), checks its type against the objective's and hands it to
    ``objective.process``, which uses the helpers below. Picklable: the source and tokenizer
    reopen in each worker.
    """

    def __init__(
        self,
        source: Sequence[Any],
        cfg: PipelineConfig,
        tokenizer_dir: str,
        objective: ObjectiveData,
    ) -> None:
        self.source = source
        self.cfg = cfg
        self.tokenizer_dir = str(tokenizer_dir)
        self.objective = objective
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

    def process(self, record: Any, index: int, stream_index: int) -> dict[str, Any]:
        expected = self.objective.record_types
        if not isinstance(record, expected):
            raise self.error(
                index,
                "bad_value",
                f"objective {self.objective.name!r} expects {[t.kind for t in expected]}, found "
                f"{type(record).__name__}",
            )
        return self.objective.process(self, record, index, stream_index)

    # Helpers for ObjectiveData.process ----------------------------------------------------

    def error(self, index: int, reason: str, detail: str) -> R.RecordError:
        """A bad-record error naming this source and record."""
        return R.RecordError(self.source_name, index, reason, detail)

    def tokenize(
        self, turns: Sequence[R.Turn], n_images: int, index: int, tiles: Sequence[int] | None = None
    ) -> TokenizedSample:
        """Chat-templated ids and labels of a conversation with ``n_images`` image runs (of
        ``tiles[k]`` tiles each with dynamic tiles)."""
        messages = [{"role": t.role, "content": t.content} for t in turns]
        return self.tokenizer.tokenize(
            messages, n_images, source=self.source_name, index=index, image_tiles=tiles
        )

    def images(
        self, images: Sequence[bytes], index: int, stream_index: int, side: int
    ) -> tuple[np.ndarray, list[int]]:
        """([n_tiles, H, W, 3] float32, tiles per image), seeded augmentation per side and
        image; without dynamic tiles an image is one tile. Tiles count against
        max_images_per_example (the row's compiled image budget)."""
        cfg = self.cfg
        if len(images) > cfg.max_images_per_example:
            raise self.error(
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
            raise self.error(
                index,
                "too_long",
                f"{len(images)} image(s) give {sum(counts)} tiles {counts} (max_tiles "
                f"{cfg.image.max_tiles}, thumbnail {cfg.image.use_thumbnail}) > "
                f"max_images_per_example {cfg.max_images_per_example} (the compiled image budget "
                "of a row; each tile is one image slot)",
            )
        shape = (0, cfg.image.height, cfg.image.width, 3)
        return (np.concatenate(tiles) if tiles else np.zeros(shape, np.float32)), counts

    def conversation(
        self,
        turns: Sequence[R.Turn],
        images: Sequence[bytes],
        index: int,
        stream_index: int,
        prefix: str = "",
        side: int = 0,
    ) -> dict[str, Any]:
        """{prefix}input_ids [n], {prefix}labels [n], {prefix}pixel_values [k, H, W, 3]."""
        if self.cfg.image.tiles_images:  # token counts follow the tiles: images come first
            pixels, counts = self.images(images, index, stream_index, side)
            sample = self.tokenize(turns, len(images), index, counts)
            pixels = pixels[: sum(counts[: sample.num_images])]
        else:
            sample = self.tokenize(turns, len(images), index)
            # Truncation may drop trailing images: keep the pixels of the images still referenced.
            pixels, _ = self.images(images[: sample.num_images], index, stream_index, side)
        return {
            f"{prefix}input_ids": sample.input_ids,
            f"{prefix}labels": sample.labels,
            f"{prefix}pixel_values": pixels,
        }


# ------------------------------------------------------------------ batching (main process)


def collate_rows(
    examples: Sequence[dict[str, Any]], prefix: str, cfg: PipelineConfig, pad_token_id: int
) -> dict[str, np.ndarray]:
    """Token rows (+ images) of one side, right-padded to the smallest length bucket:
    input_ids / labels / attention_mask / positions [B, L] int32, pixel_values
    [B, M, H, W, 3] float32 (zeros for missing images), image_mask [B, M] int32."""
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
        f"{prefix}input_ids": packing.pad_1d(ids, length, pad_token_id),
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


def row_keys(prefix: str = "", layout: str = "bucketed") -> dict[str, BatchKey]:
    """Declarations of ``collate_rows`` / the packer's keys for one side (segment_ids when
    packed)."""
    keys = {
        "input_ids": BatchKey(("L",), np.int32, 0),
        "labels": BatchKey(("L",), np.int32, IGNORE_INDEX),
        "attention_mask": BatchKey(("L",), np.int32, 0),
        "positions": BatchKey(("L",), np.int32, ARANGE),
        "pixel_values": BatchKey(("M", "H", "W", 3), np.float32, 0.0),
        "image_mask": BatchKey(("M",), np.int32, 0),
    }
    if layout == "packing":
        keys["segment_ids"] = BatchKey(("L",), np.int32, 0)
    return {prefix + k: v for k, v in keys.items()}


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


def build_pipeline(
    source: Sequence[Any], config: PipelineConfig, tokenizer_dir: str, objective: ObjectiveData
) -> Pipeline:
    """The pipeline of ``objective`` over a random-access record source.

    ``source``: ``mathjax_vl.data.storage.open_source(dir, split)`` or any sequence of records
    (or record dicts). ``tokenizer_dir``: a local HF tokenizer directory. ``objective``: the
    objective's data half, named ``config.objective`` (mathjax_vl.train.tasks.build_pipeline
    looks it up by that name).
    """
    cfg = config
    if objective.name != cfg.objective:
        raise ValueError(
            f"pipeline config names objective {cfg.objective!r} but got {objective.name!r}"
        )
    layout = objective.resolve_layout(cfg.layout)
    n = len(source)
    if n == 0:
        raise ValueError(f"{_source_name(source)} is empty")
    ds = grain.MapDataset.range(n)
    if cfg.shuffle:
        ds = ds.shuffle(seed=cfg.seed)
    ds = ds.repeat(cfg.num_epochs)
    ds = ds[cfg.process_index :: cfg.process_count]
    processor = ExampleProcessor(source, cfg, tokenizer_dir, objective)
    ds = ds.map_with_index(processor)
    ahead = cfg.read_buffer_examples if cfg.read_buffer_examples is not None else 4 * cfg.batch_size
    read = grain.ReadOptions(num_threads=cfg.read_threads, prefetch_buffer_size=ahead)
    it = br.mp_prefetch(ds.to_iter_dataset(read), cfg.num_workers, cfg.worker_buffer_size)
    tracker = br.BadRecordTracker(cfg.bad_records, name=f"{cfg.objective}:{_source_name(source)}")
    it = br.BadRecordAccountingIterDataset(it, tracker)
    it, packer = objective.batch(it, cfg, objective.pad_token_id(processor))
    it = it.map(_CheckKeys(objective.name, list(objective.batch_keys(layout))))
    if cfg.prefetch_batches > 0:
        it = grain.experimental.ThreadPrefetchIterDataset(
            it, prefetch_buffer_size=cfg.prefetch_batches
        )
    return Pipeline(dataset=it, tracker=tracker, config=cfg, packer=packer)
