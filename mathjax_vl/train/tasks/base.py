"""The objective interface the one trainer consumes.

An objective is one module of this package: its data half (``ObjectiveData``: record types,
example processing, collate, batch keys with shape/dtype/pad; mathjax_vl.data.pipelines), its
``Task`` (model, loss, metrics, synthetic example) and one ``Objective`` registration under the
name that the datagen recipe, the pipeline and ``task.name`` share. The trainer owns everything
else (mesh, sharding, optimiser, checkpoints, metrics).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from mathjax_vl.data.batch_keys import BatchKey
from mathjax_vl.data.pipelines import ObjectiveData

Batch = dict[str, Any]
LossParts = dict[str, jax.Array]


class Task(abc.ABC):
    """One training objective.

    Subclasses set `data` (their objective's data half: its batch keys are the task's batch) and
    implement the abstract methods. `loss` must be a pure function of (params, batch, rng) so it
    can be jitted, differentiated and scanned over microbatches.
    """

    data: ObjectiveData
    layout: str = "bucketed"  # the row layout of this run's batches (set from config.data)
    # How `grad_accum_steps > 1` reproduces the full-batch step (mathjax_vl.train.step):
    #   "sum": `loss_normalizers` gives the whole batch's denominators and every microbatch's
    #       `loss(..., normalizers=...)` is its share of the full-batch loss; losses, gradients
    #       and loss parts are summed (so every part must be a sum over examples / normalizer);
    #   "embeddings": the loss couples examples (contrastive negatives); `embeddings` and
    #       `loss_from_embeddings` split it so the step can cache the batch's embeddings and
    #       back-propagate per microbatch (GradCache, Gao et al. 2021);
    #   None: accumulation is refused with an error naming the task.
    accumulation: str | None = None

    @property
    def name(self) -> str:
        return self.data.name

    @staticmethod
    def requested_layout(config: ml_collections.ConfigDict) -> str:
        return config.data.get("layout", "bucketed")

    def dims(self) -> dict[str, int]:
        """Sizes of the symbolic dims of the batch keys (e.g. {"L": seq_len, "M": max_images})."""
        raise NotImplementedError(f"task {self.name!r} declares no batch dims")

    def batch_keys(self) -> dict[str, BatchKey]:
        """The declared keys of this run's batches (the objective's, in this run's layout)."""
        return self.data.batch_keys(self.layout)

    def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes and dtypes of one global batch (leading axis = examples), from batch_keys."""
        dims = self.dims()
        return {
            k: jax.ShapeDtypeStruct((batch_size, *key.resolve(dims)), key.dtype)
            for k, key in self.batch_keys().items()
        }

    @abc.abstractmethod
    def init(self, rng: jax.Array, batch: Batch) -> Any:
        """The model's `params` collection, still boxed with logical axis names (flax
        LogicallyPartitioned), for `batch` built from batch_spec. Called under jax.eval_shape and
        under a jit with output shardings, never eagerly on a full model."""

    @abc.abstractmethod
    def loss(self, params: Any, batch: Batch, rng: jax.Array) -> tuple[jax.Array, LossParts]:
        """(scalar loss to minimise, named float32 scalar parts for logging). Tasks with
        accumulation = "sum" also take `normalizers=` (see `loss_normalizers`)."""

    def loss_normalizers(self, batch: Batch) -> dict[str, jax.Array]:
        """Denominators of `loss` over this whole batch (e.g. {"tokens": n}); "sum" tasks only."""
        raise NotImplementedError(f"task {self.name!r} has no loss normalizers")

    def embeddings(self, params: Any, batch: Batch, rng: jax.Array) -> Any:
        """Per-example outputs (leading axis = examples) the loss couples; "embeddings" tasks."""
        raise NotImplementedError(f"task {self.name!r} has no embeddings")

    def loss_from_embeddings(self, params: Any, embeddings: Any) -> tuple[jax.Array, LossParts]:
        """`loss` given the whole batch's `embeddings` (params: learned scales, biases)."""
        raise NotImplementedError(f"task {self.name!r} has no loss_from_embeddings")

    @abc.abstractmethod
    def synthetic_example(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One random but valid example (no leading batch axis), for benchmarks, the compile check
        and tests; the trainer's `synthetic` data source batches these."""

    def count_tokens(self, batch: dict[str, np.ndarray]) -> int:
        """Tokens processed in a host batch, for tokens/s (default: non-padding input ids)."""
        if "attention_mask" in batch:
            return int(np.asarray(batch["attention_mask"]).sum())
        if "input_ids" in batch:
            return int(np.asarray(batch["input_ids"]).size)
        return 0

    def computed_tokens(self, batch: dict[str, np.ndarray]) -> int:
        """Token slots the step computes (padding included); count_tokens / this is the
        useful-token fraction the trainer reports."""
        if "input_ids" in batch:
            return int(np.asarray(batch["input_ids"]).size)
        return 0

    def batch_axes(self) -> dict[str, tuple[str | None, ...]] | None:
        """Optional logical names per batch key; default: batch-major, the rest replicated."""
        return None


@dataclasses.dataclass(frozen=True)
class Objective:
    """One objective's registration (module-level ``OBJECTIVE`` of its module).

    name: the one name (datagen recipe, ``config.task.name``, the pipeline's objective);
    data: its data half; task: ``task(config) -> Task``; model_roles: the model roles it trains
    (models.registry roles, or "dual_encoder"); aliases: older names that still select it (an
    alias shared by several objectives is resolved by the model's role).
    """

    name: str
    data: ObjectiveData
    task: Callable[[ml_collections.ConfigDict], Task]
    model_roles: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.data.name != self.name:
            raise ValueError(f"objective {self.name!r} has data named {self.data.name!r}")
