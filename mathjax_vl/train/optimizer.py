"""Optimiser, learning-rate schedule and the trainable/frozen split of the parameters.

Frozen parameters are split out of the tree before the optimiser sees it, so they carry no Adam
moments at all (Math-PUMA stage 2 freezes a 1.5B-7B LLM: its moments would double the memory of the
whole model) and the step never computes their weight gradients.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import optax
from flax import traverse_util

from mathjax_vl.errors import ConfigError

Params = Any


def _flat(params: Params) -> dict[str, Any]:
    return traverse_util.flatten_dict(params, sep="/") if params else {}


def _unflat(flat: dict[str, Any]) -> Params:
    return traverse_util.unflatten_dict(flat, sep="/") if flat else {}


def trainable_mask(
    params: Params, trainable: Sequence[str] = (".*",), frozen: Sequence[str] = ()
) -> dict[str, bool]:
    """Path ('a/b/kernel') -> trainable?  A path is trainable if it matches (re.search) any
    `trainable` pattern and no `frozen` pattern. Patterns that match nothing are an error: a typo
    would otherwise silently freeze or train the wrong tower."""
    flat = _flat(params)
    trainable_re = [re.compile(p) for p in trainable]
    frozen_re = [re.compile(p) for p in frozen]
    for pattern in [*trainable_re, *frozen_re]:
        if not any(pattern.search(path) for path in flat):
            sample = ", ".join(list(flat)[:8])
            raise ConfigError(
                f"parameter pattern {pattern.pattern!r} (optim.trainable / optim.frozen) matches "
                f"no parameter (paths look like: "
                f"{sample}, ...)"
            )
    return {
        path: any(p.search(path) for p in trainable_re)
        and not any(p.search(path) for p in frozen_re)
        for path in flat
    }


def split_params(params: Params, mask: dict[str, bool]) -> tuple[Params, Params]:
    """(trainable, frozen) nested dicts holding disjoint subsets of the leaves."""
    flat = _flat(params)
    if set(flat) != set(mask):
        raise ValueError("trainable mask does not match the parameter tree")
    return (
        _unflat({k: v for k, v in flat.items() if mask[k]}),
        _unflat({k: v for k, v in flat.items() if not mask[k]}),
    )


def merge_params(trainable: Params, frozen: Params) -> Params:
    """Inverse of split_params."""
    flat = _flat(trainable)
    overlap = set(flat) & set(_flat(frozen))
    if overlap:
        raise ValueError(f"parameters both trainable and frozen: {sorted(overlap)[:5]}")
    flat.update(_flat(frozen))
    return _unflat(flat)


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    return math.ceil(total_steps * warmup_ratio)


def make_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Linear warmup over `warmup_ratio` of the steps, then cosine to `end_lr_ratio` * peak."""
    peak = float(cfg.learning_rate)
    warm = warmup_steps(total_steps, float(cfg.get("warmup_ratio", 0.02)))
    kind = cfg.get("schedule", "cosine")
    if kind == "constant":
        return (
            optax.join_schedules(
                [optax.linear_schedule(0.0, peak, max(warm, 1)), optax.constant_schedule(peak)],
                [warm],
            )
            if warm
            else optax.constant_schedule(peak)
        )
    if kind != "cosine":
        raise ValueError(f"optim.schedule must be 'cosine' or 'constant', got {kind!r}")
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=warm,
        decay_steps=max(total_steps, warm + 1),
        end_value=peak * float(cfg.get("end_lr_ratio", 0.0)),
    )


def decay_mask(params: Params, exclude: Sequence[str]) -> Params:
    """Weight decay on matrices; vectors (biases, norm scales) and `exclude` regexes skip it."""
    exclude_re = [re.compile(p) for p in exclude]
    flat = _flat(params)
    return _unflat(
        {k: (v.ndim > 1 and not any(p.search(k) for p in exclude_re)) for k, v in flat.items()}
    )


def make_optimizer(
    cfg: ml_collections.ConfigDict, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW with global-norm clipping and the warmup-cosine schedule; returns (tx, schedule)."""
    schedule = make_schedule(cfg, total_steps)
    exclude = tuple(cfg.get("decay_exclude", ()))
    parts = []
    if cfg.get("grad_clip_norm", 0.0):
        parts.append(optax.clip_by_global_norm(float(cfg.grad_clip_norm)))
    parts.append(
        optax.adamw(
            learning_rate=schedule,
            b1=float(cfg.get("b1", 0.9)),
            b2=float(cfg.get("b2", 0.999)),
            eps=float(cfg.get("eps", 1e-8)),
            weight_decay=float(cfg.get("weight_decay", 0.0)),
            mask=lambda p: decay_mask(p, exclude),
        )
    )
    return optax.chain(*parts), schedule


def count_params(params: Params) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))
