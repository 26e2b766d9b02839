"""The objective interface the one trainer consumes.

A task owns its model(s), the shapes of its batch and its loss. The trainer owns everything else
(mesh, sharding, optimiser, checkpoints, metrics), so a new objective is one module here.
"""

from __future__ import annotations

import abc
from typing import Any

import jax
import numpy as np

Batch = dict[str, Any]
LossParts = dict[str, jax.Array]


class Task(abc.ABC):
    """One training objective.

    Subclasses set `name` and implement the abstract methods. `loss` must be a pure function of
    (params, batch, rng) so it can be jitted, differentiated and scanned over microbatches.
    """

    name: str = "task"
    # How `grad_accum_steps > 1` reproduces the full-batch step (mathjax_vl.train.step):
    #   "sum": `loss_normalizers` gives the whole batch's denominators and every microbatch's
    #       `loss(..., normalizers=...)` is its share of the full-batch loss; losses, gradients
    #       and loss parts are summed (so every part must be a sum over examples / normalizer);
    #   "embeddings": the loss couples examples (contrastive negatives); `embeddings` and
    #       `loss_from_embeddings` split it so the step can cache the batch's embeddings and
    #       back-propagate per microbatch (GradCache, Gao et al. 2021);
    #   None: accumulation is refused with an error naming the task.
    accumulation: str | None = None

    @abc.abstractmethod
    def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes and dtypes of one global batch (leading axis = examples)."""

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
