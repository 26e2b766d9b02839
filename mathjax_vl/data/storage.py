"""TFDS datasets (ArrayRecord files) for every record type, written and read without TensorFlow.

Why TFDS: a dataset directory is self-describing (dataset_info.json, features.json, split sizes,
shard lengths) and `as_data_source` gives a random-access source that Grain indexes directly,
which is what makes seeded shuffling and checkpointable iterators cheap. TFDS needs no TensorFlow
here because every feature is a scalar Text/int or raw bytes (`Tensor(shape=(), dtype=object)`):
images stay ENCODED (PNG/JPEG bytes) and are decoded by the pipeline, never by TFDS (its `Image`
feature would decode through TF). Variable-length lists (turns, images, choices) are `Sequence`
features, which the NumPy example parser reads without TF.

Layout: `write_dataset(records, out_dir, name)` writes `out_dir/<name>/1.0.0/` containing the TFDS
files plus `mathjax_vl_dataset.json` ({"kind", "name"}) so `open_source` knows which record type to
rebuild. One dataset holds one record kind. Splits are written together (TFDS cannot append a split
to a prepared dataset), so pass a {split: records} mapping to write several.

Example order is preserved (`disable_shuffling`): index i of the source is the i-th record written;
shuffling is the Grain sampler's job (seeded, checkpointable).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mathjax_vl.data import records as R

DATASET_VERSION = "1.0.0"
SIDECAR = "mathjax_vl_dataset.json"


# --------------------------------------------------------------------------------------------
# Feature specs: record dict <-> TFDS example (flat enough for TFDS's TF-free parser)
# --------------------------------------------------------------------------------------------


def _features(kind: str):
    import tensorflow_datasets as tfds

    F = tfds.features
    text = F.Text
    blob = lambda: F.Tensor(shape=(), dtype=np.object_)  # encoded image bytes, never decoded
    turns = lambda: F.Sequence({"role": text(), "content": text()})
    side = lambda: F.FeaturesDict({"instruction": text(), "images": F.Sequence(blob())})
    specs = {
        "text_conversation": {"id": text(), "turns": turns()},
        "multimodal_conversation": {"id": text(), "turns": turns(), "images": F.Sequence(blob())},
        "puma_pair": {
            "id": text(),
            "text_rich": side(),
            "vision_rich": side(),
            "solution": text(),
        },
        "image_caption": {"id": text(), "image": blob(), "caption": text()},
        "image_code": {"id": text(), "image": blob(), "code": text(), "language": text()},
        "preference_pair": {
            "id": text(),
            "prompt": text(),
            "chosen": text(),
            "rejected": text(),
            "images": F.Sequence(blob()),
        },
        "eval_problem": {
            "problem_id": text(),
            "version": text(),
            "question": text(),
            "answer": text(),
            "answer_type": text(),
            "images": F.Sequence(blob()),
            "has_choices": F.Scalar(dtype=np.bool_),  # distinguishes None from []
            "choices": F.Sequence(text()),
            "precision": F.Scalar(dtype=np.int64),  # -1 encodes None
            "metadata_json": text(),
        },
    }
    if kind not in specs:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {sorted(specs)}")
    return F.FeaturesDict(specs[kind])


def to_example(record: R.Record) -> dict[str, Any]:
    d = record.to_dict()
    kind = d.pop("kind")
    if kind == "eval_problem":
        d["has_choices"] = d["choices"] is not None
        d["choices"] = d["choices"] or []
        d["precision"] = -1 if d["precision"] is None else d["precision"]
        d["metadata_json"] = json.dumps(d.pop("metadata"), sort_keys=True)
    return d


def _text(x: Any) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def _blobs(xs: Any) -> list[bytes]:
    return [bytes(x) for x in list(xs)]


def _turns(t: Mapping[str, Any]) -> list[dict[str, str]]:
    roles, contents = list(t["role"]), list(t["content"])
    return [{"role": _text(r), "content": _text(c)} for r, c in zip(roles, contents)]


def _from_example(kind: str, ex: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of to_example, giving the plain dict `records.record_from_dict` accepts."""
    if kind == "text_conversation":
        return {"kind": kind, "id": _text(ex["id"]), "turns": _turns(ex["turns"])}
    if kind == "multimodal_conversation":
        return {
            "kind": kind,
            "id": _text(ex["id"]),
            "turns": _turns(ex["turns"]),
            "images": _blobs(ex["images"]),
        }
    if kind == "puma_pair":
        side = lambda s: {"instruction": _text(s["instruction"]), "images": _blobs(s["images"])}
        return {
            "kind": kind,
            "id": _text(ex["id"]),
            "text_rich": side(ex["text_rich"]),
            "vision_rich": side(ex["vision_rich"]),
            "solution": _text(ex["solution"]),
        }
    if kind == "image_caption":
        return {
            "kind": kind,
            "id": _text(ex["id"]),
            "image": bytes(ex["image"]),
            "caption": _text(ex["caption"]),
        }
    if kind == "image_code":
        return {
            "kind": kind,
            "id": _text(ex["id"]),
            "image": bytes(ex["image"]),
            "code": _text(ex["code"]),
            "language": _text(ex["language"]),
        }
    if kind == "preference_pair":
        out = {k: _text(ex[k]) for k in ("id", "prompt", "chosen", "rejected")}
        return {"kind": kind, **out, "images": _blobs(ex["images"])}
    if kind == "eval_problem":
        precision = int(ex["precision"])
        return {
            "kind": kind,
            "problem_id": _text(ex["problem_id"]),
            "version": _text(ex["version"]),
            "question": _text(ex["question"]),
            "answer": _text(ex["answer"]),
            "answer_type": _text(ex["answer_type"]),
            "images": _blobs(ex["images"]),
            "choices": [_text(c) for c in list(ex["choices"])] if bool(ex["has_choices"]) else None,
            "precision": None if precision < 0 else precision,
            "metadata": json.loads(_text(ex["metadata_json"])),
        }
    raise ValueError(f"unknown record kind {kind!r}")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def builder_class(kind: str, name: str):
    """A GeneratorBasedBuilder subclass named `name` that writes the records it is handed."""
    import tensorflow_datasets as tfds

    class _RecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(DATASET_VERSION)
        RELEASE_NOTES = {DATASET_VERSION: "mathjax_vl record dataset."}  # noqa: RUF012
        # No source file to find checksums/metadata next to: a class built at run time. (TFDS's
        # lookup would also import `importlib_resources`, which is not installed.)
        code_path = None

        def __init__(self, *, splits: Mapping[str, Iterable[R.Record]], **kwargs):
            self._splits = splits
            super().__init__(**kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description=f"mathjax_vl {kind} records ({R.RECORD_TYPES[kind].__doc__.strip()})",
                features=_features(kind),
                metadata=tfds.core.MetadataDict(kind=kind),
                disable_shuffling=True,  # keep write order; Grain's seeded sampler shuffles
            )

        # TFDS prints "Downloading and preparing dataset ..." to stdout: misleading for a local
        # write and noise in datagen logs; our callers report what they wrote.
        def _log_download_bytes(self) -> None:
            pass

        def _log_download_done(self) -> None:
            pass

        def _split_generators(self, dl_manager):
            return {
                split: self._generate_examples(split, recs) for split, recs in self._splits.items()
            }

        def _generate_examples(self, split: str, recs: Iterable[R.Record]):
            for i, rec in enumerate(recs):
                if not isinstance(rec, R.RECORD_TYPES[kind]):
                    raise R.RecordError(
                        f"<records for split {split!r}>",
                        i,
                        "bad_value",
                        f"dataset {name!r} holds {kind} records, found {type(rec).__name__}",
                    )
                yield i, to_example(rec)

    _RecordBuilder.name = name
    _RecordBuilder.__name__ = f"RecordBuilder_{name}"
    return _RecordBuilder


def write_dataset(
    records: Iterable[R.Record] | Mapping[str, Iterable[R.Record]],
    out_dir: str | os.PathLike,
    name: str,
    split: str = "train",
    kind: str | None = None,
) -> str:
    """Writes records as a TFDS ArrayRecord dataset; returns the dataset version directory.

    `records` is an iterable (written as `split`) or a {split: iterable} mapping. Iterables are
    consumed once, streaming; `kind` is taken from the first record unless given (needed for an
    empty dataset). Refuses to overwrite an existing dataset directory.
    """
    if not name.isidentifier() or name.lower() != name:
        raise ValueError(f"dataset name must be a lower-case identifier, found {name!r}")
    splits = dict(records) if isinstance(records, Mapping) else {split: records}
    if kind is None:
        kind, splits = _peek_kind(splits)
    if kind not in R.RECORD_TYPES:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {sorted(R.RECORD_TYPES)}")
    version_dir = os.path.join(os.fspath(out_dir), name, DATASET_VERSION)
    if os.path.exists(os.path.join(version_dir, "dataset_info.json")):
        raise FileExistsError(f"dataset already exists at {version_dir}; write to a new out_dir")
    builder = builder_class(kind, name)(
        splits=splits, data_dir=os.fspath(out_dir), file_format="array_record"
    )
    _quiet_tfds()
    try:
        builder.download_and_prepare()
    except AssertionError as exc:  # TFDS's way of saying a split generator yielded nothing
        if "No examples were yielded" not in str(exc):
            raise
        raise ValueError(f"{version_dir}: {exc}; TFDS cannot store an empty split") from exc
    with open(os.path.join(version_dir, SIDECAR), "w") as f:
        json.dump({"kind": kind, "name": name, "splits": sorted(splits)}, f)
    return version_dir


def _peek_kind(splits: dict[str, Iterable[R.Record]]) -> tuple[str, dict[str, Iterable]]:
    import itertools

    for split, recs in splits.items():
        it = iter(recs)
        try:
            first = next(it)
        except StopIteration:
            splits[split] = []
            continue
        splits[split] = itertools.chain([first], it)
        if type(first) not in R.RECORD_TYPES.values():
            raise TypeError(f"split {split!r}: expected records, found {type(first).__name__}")
        return first.kind, splits
    raise ValueError("no records to write and no `kind` given")


def _quiet_tfds() -> None:
    """TFDS prints progress bars on every prepare; our CLI reports counts itself."""
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def find_dataset_dir(path: str | os.PathLike) -> str:
    """The version dir holding dataset_info.json: `path` itself or the single one below it."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "dataset_info.json")):
        return path
    found = []
    for root, _dirs, files in os.walk(path):
        if "dataset_info.json" in files and root.count(os.sep) - path.count(os.sep) <= 3:
            found.append(root)
    if len(found) != 1:
        raise FileNotFoundError(
            f"{path}: expected exactly one TFDS dataset (a dir with dataset_info.json) at or below"
            f" it, found {len(found)}: {sorted(found)[:5]}"
        )
    return found[0]


def dataset_kind(dataset_dir: str) -> str:
    sidecar = os.path.join(dataset_dir, SIDECAR)
    if not os.path.isfile(sidecar):
        raise FileNotFoundError(f"{sidecar} missing: {dataset_dir} not written by write_dataset")
    with open(sidecar) as f:
        return json.load(f)["kind"]


class RecordSource(Sequence):
    """Random-access records of one split: `len(src)`, `src[i] -> record` (Grain data source).

    Picklable for Grain worker processes: only the path and split are pickled; each process opens
    the ArrayRecord files lazily. A stored example that fails validation raises RecordError naming
    the dataset dir, split and index; one whose bytes are corrupt (a Riegeli chunk hash mismatch,
    an unparsable example) raises RecordError("bad_format") naming the shard file and the record's
    index inside it, so the bad-record policy counts or raises it like any other bad record.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train"):
        self.dataset_dir = find_dataset_dir(path)
        self.split = split
        self.kind = dataset_kind(self.dataset_dir)
        self._source = None
        self._shard_table: list[tuple[int, int, str]] | None = None
        self._len = len(self._open())

    def _open(self):
        if self._source is None:
            import tensorflow_datasets as tfds

            builder = tfds.builder_from_directory(self.dataset_dir)
            if self.split not in builder.info.splits:
                raise KeyError(
                    f"{self.dataset_dir}: no split {self.split!r}; found "
                    f"{sorted(builder.info.splits)}"
                )
            self._source = builder.as_data_source(split=self.split)
        return self._source

    def __len__(self) -> int:
        return self._len

    def _shards(self) -> list[tuple[int, int, str]]:
        """(first index, length, file) per ArrayRecord shard of the split, in index order."""
        if self._shard_table is None:
            import tensorflow_datasets as tfds

            info = tfds.builder_from_directory(self.dataset_dir).info.splits[self.split]
            table, start = [], 0
            for length, path in zip(info.shard_lengths, info.filepaths):
                table.append((start, int(length), os.fspath(path)))
                start += int(length)
            self._shard_table = table
        return self._shard_table

    def locate(self, index: int) -> tuple[str, int]:
        """(shard file, index inside that shard) of dataset index `index`."""
        for start, length, path in self._shards():
            if start <= index < start + length:
                return path, index - start
        return f"{self.dataset_dir}[{self.split}]", index

    def _corrupt(self, index: int, err: Exception) -> R.RecordError:
        shard, local = self.locate(index)
        first = str(err).splitlines()[0] if str(err) else ""
        return R.RecordError(
            shard,
            local,
            "bad_format",
            f"corrupt ArrayRecord data (record {index} of {self.dataset_dir}[{self.split}]): "
            f"{type(err).__name__}: {first}",
        )

    def _read(self, index: int) -> Mapping[str, Any]:
        try:
            return self._open()[index]
        except Exception as err:
            raise self._corrupt(index, err) from None

    def _decode(self, index: int, example: Mapping[str, Any]) -> R.Record:
        where = f"{self.dataset_dir}[{self.split}]"
        try:
            plain = _from_example(self.kind, example)
        except (KeyError, TypeError, ValueError) as err:  # bytes that parsed into garbage
            raise self._corrupt(index, err) from None
        return R.record_from_dict(plain, where, index)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        index = int(index)
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(f"index {index} out of range for {self._len} records")
        return self._decode(index, self._read(index))

    def __getitems__(self, indices: Sequence[int]) -> list[R.Record]:
        """Batched read (Grain uses it when present): one ArrayRecord call for many indices."""
        indices = [int(i) for i in indices]
        try:
            examples = self._open().__getitems__(indices)
        except Exception:  # one corrupt record fails the batch: read one by one to name it
            examples = [self._read(i) for i in indices]
        return [self._decode(i, ex) for i, ex in zip(indices, examples)]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_source"] = None
        state["_shard_table"] = None
        return state

    def __repr__(self) -> str:
        return (
            f"RecordSource({self.dataset_dir!r}, split={self.split!r}, kind={self.kind}, "
            f"n={self._len})"
        )


def open_source(path: str | os.PathLike, split: str = "train") -> RecordSource:
    """Random-access source of the records in `split` of the dataset at or below `path`."""
    return RecordSource(path, split)
