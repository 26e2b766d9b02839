"""The train step: exact microbatch gradient accumulation, optimizer update, non-finite guard.

Jitted once with explicit in/out shardings and the state donated, so parameters and Adam moments
are updated in place on every device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mathjax_vl.train import optimizer as opt_lib
from mathjax_vl.train import sharding as shard_lib
from mathjax_vl.train.state import StateSetup, TrainState
from mathjax_vl.train.tasks.base import Task


def _cast_floats(tree: Any, dtype) -> Any:
    if dtype is None:
        return tree
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


def _split_fn(accum_steps: int, mesh, rules) -> Callable:
    """x [B, ...] -> [accum, B/accum, ...]; microbatch i = rows i::accum, each spread over all
    devices (the batch sharding moves to axis 1)."""

    def split(x):
        b = x.shape[0]
        if b % accum_steps:
            raise ValueError(f"batch {b} is not divisible by accum_steps {accum_steps}")
        y = x.reshape(b // accum_steps, accum_steps, *x.shape[1:]).swapaxes(0, 1)
        if mesh is not None:
            spec = shard_lib.batch_sharding(mesh, x.ndim, rules).spec
            y = jax.lax.with_sharding_constraint(
                y, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, *spec))
            )
        return y

    return split


def _merge_fn(mesh, rules) -> Callable:
    """The inverse of `_split_fn`: [accum, b, ...] -> [b * accum, ...] in the batch's row order."""

    def merge(y):
        x = y.swapaxes(0, 1).reshape(y.shape[0] * y.shape[1], *y.shape[2:])
        if mesh is not None:
            x = jax.lax.with_sharding_constraint(x, shard_lib.batch_sharding(mesh, x.ndim, rules))
        return x

    return merge


def _accumulate_sums(task, compute_params, split, merge, accum_steps):
    """Exact accumulation for losses that are normalised sums over examples (token means, the
    PUMA KL in every normalisation): the denominators come from the whole batch, so microbatch
    losses, gradients and parts are shares that add up to the full-batch ones."""

    def micro_loss(trainable, frozen, batch, rng, normalizers):
        params = compute_params(trainable, frozen)
        loss, parts = task.loss(params, batch, rng, normalizers=normalizers)
        return loss.astype(jnp.float32), parts

    grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

    def run(trainable, frozen, batch, rng):
        normalizers = task.loss_normalizers(batch)
        micro = jax.tree.map(split, batch)
        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), trainable)

        def body(acc, xs):
            mb, i = xs
            (mloss, pts), g = grad_fn(
                trainable, frozen, mb, jax.random.fold_in(rng, i), normalizers
            )
            acc = jax.tree.map(lambda a, b: a + b.astype(jnp.float32), acc, g)
            return acc, (mloss, pts)

        grads, (losses, parts_all) = jax.lax.scan(body, zeros, (micro, jnp.arange(accum_steps)))
        parts = jax.tree.map(lambda x: jnp.sum(x.astype(jnp.float32), axis=0), parts_all)
        return losses.sum(), parts, grads

    return run


def _accumulate_embeddings(task, compute_params, split, merge, accum_steps):
    """Exact accumulation for losses that couple the batch's examples (contrastive negatives),
    after GradCache (Gao et al. 2021): (1) embed every microbatch without gradients, (2) the loss
    and its gradient w.r.t. the whole batch's embeddings (and the head's own parameters: scale,
    bias), (3) per microbatch, re-embed and pull that gradient back through the encoders (vjp).
    One extra forward pass; memory of one microbatch's activations plus the [B, P] embeddings."""

    def embed(trainable, frozen, mb, rng):
        return task.embeddings(compute_params(trainable, frozen), mb, rng)

    def head(trainable, frozen, emb):
        loss, parts = task.loss_from_embeddings(compute_params(trainable, frozen), emb)
        return loss.astype(jnp.float32), parts

    head_grad = jax.value_and_grad(head, argnums=(0, 2), has_aux=True)

    def run(trainable, frozen, batch, rng):
        micro = jax.tree.map(split, batch)
        idx = jnp.arange(accum_steps)

        def fwd(_, xs):
            mb, i = xs
            return None, embed(trainable, frozen, mb, jax.random.fold_in(rng, i))

        _, embs = jax.lax.scan(fwd, None, (micro, idx))  # leaves [accum, b, ...]
        full = jax.lax.stop_gradient(jax.tree.map(merge, embs))  # [B, ...], batch row order
        (loss, parts), (g_head, g_emb) = head_grad(trainable, frozen, full)
        g_micro = jax.tree.map(split, g_emb)

        def bwd(acc, xs):
            mb, g, i = xs
            _, pull = jax.vjp(lambda t: embed(t, frozen, mb, jax.random.fold_in(rng, i)), trainable)
            (gt,) = pull(g)
            return jax.tree.map(lambda a, b: a + b.astype(jnp.float32), acc, gt), None

        init = jax.tree.map(lambda g: g.astype(jnp.float32), g_head)
        grads, _ = jax.lax.scan(bwd, init, (micro, g_micro, idx))
        return loss, parts, grads

    return run


# Task.accumulation -> how the accumulated step reproduces the full-batch one.
ACCUMULATORS: dict[str, Callable] = {
    "sum": _accumulate_sums,
    "embeddings": _accumulate_embeddings,
}


def make_train_step(
    task: Task,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    *,
    accum_steps: int = 1,
    param_compute_dtype=None,
    skip_nonfinite: bool = False,
    base_rng: jax.Array | None = None,
    mesh: jax.sharding.Mesh | None = None,
    rules: shard_lib.Rules = shard_lib.DEFAULT_RULES,
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """Returns step(state, batch) -> (new_state, metrics); not yet jitted (see `jit_train_step`).

    `param_compute_dtype` (e.g. bfloat16) casts the float32 master weights once per step before the
    forward pass; gradients flow back through the cast in float32. With accumulation the global
    batch is split into `accum_steps` microbatches, each spread over all devices, and the loss,
    gradients and loss parts equal the full batch's (up to float summation order): see
    `ACCUMULATORS` and `Task.accumulation`.
    """
    base_rng = jax.random.key(0) if base_rng is None else base_rng

    def compute_params(trainable, frozen):
        return opt_lib.merge_params(
            _cast_floats(trainable, param_compute_dtype), _cast_floats(frozen, param_compute_dtype)
        )

    def full_loss(trainable, frozen, batch, rng):
        loss, parts = task.loss(compute_params(trainable, frozen), batch, rng)
        return loss.astype(jnp.float32), parts

    grad_fn = jax.value_and_grad(full_loss, has_aux=True)
    accumulate = None
    if accum_steps > 1:
        kind = getattr(task, "accumulation", None)
        if kind not in ACCUMULATORS:
            raise ValueError(
                f"train.grad_accum_steps={accum_steps}: task {task.name!r} declares "
                f"accumulation={kind!r}; exact accumulation needs one of {sorted(ACCUMULATORS)} "
                "(see mathjax_vl.train.tasks.base.Task.accumulation)"
            )
        accumulate = ACCUMULATORS[kind](
            task,
            compute_params,
            _split_fn(accum_steps, mesh, rules),
            _merge_fn(mesh, rules),
            accum_steps,
        )

    def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(base_rng, state.step)
        if accumulate is None:
            (loss, parts), grads = grad_fn(state.trainable, state.frozen, batch, rng)
        else:
            loss, parts, grads = accumulate(state.trainable, state.frozen, batch, rng)
        grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, state.trainable)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, new_opt = tx.update(grads, state.opt_state, state.trainable)
        new_trainable = optax.apply_updates(state.trainable, updates)
        if skip_nonfinite:
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
            new_trainable = keep(new_trainable, state.trainable)
            new_opt = keep(new_opt, state.opt_state)
        new_state = TrainState(
            step=state.step + 1, trainable=new_trainable, frozen=state.frozen, opt_state=new_opt
        )
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "learning_rate": jnp.asarray(schedule(state.step), jnp.float32),
            "finite": finite,
            **{f"loss/{k}": jnp.asarray(v, jnp.float32) for k, v in parts.items()},
        }
        return new_state, metrics

    return step


def jit_train_step(
    step_fn: Callable,
    setup: StateSetup,
    batch_shardings: dict,
    mesh: jax.sharding.Mesh,
    rules: shard_lib.Rules,
) -> Callable:
    """jit with explicit shardings, the state donated, under the mesh and logical-axis rules so
    the models' activation constraints resolve to mesh axes."""
    jitted = jax.jit(
        step_fn,
        in_shardings=(setup.shardings, batch_shardings),
        out_shardings=(setup.shardings, shard_lib.replicated(mesh)),
        donate_argnums=(0,),
    )

    class _Bound:
        """Calls/lowers the jitted step inside the mesh and rules contexts."""

        def __call__(self, state, batch):
            with mesh_context(mesh, rules):
                return jitted(state, batch)

        def lower(self, state, batch):
            with mesh_context(mesh, rules):
                return jitted.lower(state, batch)

    return _Bound()


class mesh_context:
    """`with mesh_context(mesh, rules):` sets the mesh and flax's logical axis rules."""

    def __init__(self, mesh, rules):
        self._mesh = mesh
        self._rules = rules
        self._stack = []

    def __enter__(self):
        for ctx in (
            jax.sharding.use_mesh(self._mesh)
            if hasattr(jax.sharding, "use_mesh")
            else jax.set_mesh(self._mesh),
            nn.logical_axis_rules(self._rules),
        ):
            ctx.__enter__()
            self._stack.append(ctx)
        return self

    def __exit__(self, *exc):
        while self._stack:
            self._stack.pop().__exit__(*exc)
        return False
