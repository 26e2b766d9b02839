"""Input iterators for the trainer: the real Grain pipelines or a synthetic Grain source, both
checkpointable (`get_state`/`set_state`), plus placement of host batches as global arrays.

Each process reads its own slice of the global batch (global_batch / process_count rows) and
`jax.make_array_from_process_local_data` assembles the global array on the mesh.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import ml_collections
import numpy as np

from mathjax_vl.data.batch_keys import check_keys
from mathjax_vl.errors import ConfigError
from mathjax_vl.train.tasks.base import Task


class SyntheticExamples:
    """Random-access source of `task.synthetic_example` rows, deterministic per (seed, index).

    Every example must hold exactly the objective's declared batch keys (an error names the
    key and the objective). `nan_index` (fault injection for the guard tests): that example's
    float arrays are NaN."""

    def __init__(self, task: Task, num_examples: int, seed: int, nan_index: int = -1):
        self._task = task
        self._n = int(num_examples)
        self._seed = int(seed)
        self._nan_index = int(nan_index)
        # plug-in tasks without an objective's data half are checked against their batch_spec
        self._keys = list(task.batch_keys()) if hasattr(task, "data") else None

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = int(index)
        example = self._task.synthetic_example(np.random.default_rng([self._seed, index]))
        if self._keys is not None:
            check_keys(self._task.name, self._keys, example, "synthetic example")
        if index == self._nan_index:
            example = {
                k: np.full_like(v, np.nan) if np.issubdtype(v.dtype, np.floating) else v
                for k, v in example.items()
            }
        return example


def build_iterator(
    config: ml_collections.ConfigDict,
    task: Task,
    process_index: int,
    process_count: int,
) -> Any:
    """A checkpointable iterator of host batches (dict of numpy, leading dim = local batch)."""
    global_batch = int(config.train.global_batch_size)
    if global_batch % process_count:
        raise ConfigError(
            f"train.global_batch_size {global_batch} is not divisible by {process_count} processes"
        )
    local_batch = global_batch // process_count
    kind = config.data.get("kind", "synthetic")
    if kind == "synthetic":
        import grain

        source = SyntheticExamples(
            task,
            int(config.data.get("num_examples", 1024)),
            int(config.data.get("seed", config.seed)),
            int(config.data.get("nan_example_index", -1)),
        )
        ds = (
            grain.MapDataset.source(source)
            .shuffle(seed=int(config.data.get("seed", config.seed)))
            .repeat(None)
        )
        ds = ds[process_index::process_count]
        ds = ds.batch(local_batch, drop_remainder=True)
        return iter(ds.to_iter_dataset())
    if kind == "pipeline":
        from mathjax_vl.train import pipeline_adapter

        return pipeline_adapter.build(config, task, process_index, process_count, local_batch)
    raise ConfigError(f"data.kind must be 'synthetic' or 'pipeline', got {kind!r}")


def to_global(
    host_batch: dict[str, np.ndarray],
    shardings: dict[str, jax.sharding.NamedSharding],
    global_batch: int,
) -> dict[str, jax.Array]:
    """Per-process rows -> global jax.Arrays laid out by `shardings`."""
    missing = sorted(set(shardings) - set(host_batch))
    if missing:
        raise KeyError(f"batch lacks keys {missing}; it has {sorted(host_batch)}")
    out = {}
    for key, sharding in shardings.items():
        local = np.asarray(host_batch[key])
        shape = (global_batch, *local.shape[1:])
        out[key] = jax.make_array_from_process_local_data(sharding, local, shape)
    return out


def fingerprint(host_batch: dict[str, np.ndarray]) -> str:
    """Short content hash of a host batch (logged per step so runs can be compared)."""
    h = hashlib.sha1()
    for key in sorted(host_batch):
        arr = np.ascontiguousarray(host_batch[key])
        h.update(key.encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]
