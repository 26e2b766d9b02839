"""The objectives: one module each, registered here by the one name that the datagen recipe
(`mathjax-vl datagen --recipe NAME`), the input pipeline and `config.task.name` all use.

Each module defines `OBJECTIVE = Objective(...)`: its data half (record types, processing,
collate, batch keys), its Task (loss, metrics, synthetic example), the model roles it trains and
older names kept as aliases. `config.task.factory = "package.module:callable"` plugs in an
objective defined elsewhere (callable(config) -> Task, whose `data` declares its batch).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from typing import Any

import ml_collections

from mathjax_vl.errors import ConfigError
from mathjax_vl.train.tasks.base import Objective, Task

# One line per objective: its name -> the module defining OBJECTIVE.
_MODULES = {
    "text_sft": "mathjax_vl.train.tasks.sft",
    "multimodal_sft": "mathjax_vl.train.tasks.multimodal",
    "puma_kl": "mathjax_vl.train.tasks.puma_kl",
    "contrastive": "mathjax_vl.train.tasks.contrastive",
    "image_to_code": "mathjax_vl.train.tasks.image_to_code",
}


def _load(target: str):
    module, _, attr = target.partition(":")
    if not attr:
        raise ValueError(f"task factory {target!r} must look like 'package.module:callable'")
    return getattr(importlib.import_module(module), attr)


def names() -> list[str]:
    """The registered objective names."""
    return sorted(_MODULES)


def get(name: str) -> Objective:
    """The objective registered as `name` (its canonical name, not an alias)."""
    if name not in _MODULES:
        raise ConfigError(f"unknown objective {name!r}; choose from {names()}")
    objective = importlib.import_module(_MODULES[name]).OBJECTIVE
    if objective.name != name:
        raise ValueError(f"{_MODULES[name]} registers {objective.name!r}, listed as {name!r}")
    return objective


def _candidates(name: str) -> list[Objective]:
    return [o for o in map(get, names()) if name == o.name or name in o.aliases]


def model_role(config: ml_collections.ConfigDict) -> str:
    """The role of `config.model` (models.registry roles; the dual encoder is its own)."""
    from mathjax_vl.models import build, registry

    kind = build.model_kind(config.model)
    return kind if kind == build.DUAL_ENCODER_KIND else registry.get(kind).role


def _by_name(name: str, role: str | None, field: str) -> Objective:
    found = _candidates(name)
    if not found:
        raise ConfigError(f"unknown {field} {name!r}; choose from {names()}")
    fits = [o for o in found if role is None or role in o.model_roles]
    if not fits:
        raise ConfigError(
            f"{field} {name!r} trains {[r for o in found for r in o.model_roles]} models, but "
            f"model.kind is a {role!r}"
        )
    if len(fits) > 1:
        raise ConfigError(
            f"{field} {name!r} is ambiguous here ({[o.name for o in fits]}); use one of those"
        )
    return fits[0]


def resolve(config: ml_collections.ConfigDict) -> Objective:
    """The objective of a training config: `task.name` (or an alias), the model's role choosing
    between objectives that share an alias ("sft"); a `data.objective` (older configs) must
    name the same objective."""
    role = model_role(config)
    objective = _by_name(config.task.name, role, "task.name")
    data_name = config.data.get("objective") if "data" in config else None
    if data_name and _by_name(data_name, role, "data.objective").name != objective.name:
        raise ConfigError(
            f"data.objective {data_name!r} and task.name {config.task.name!r} are different "
            f"objectives; set task.name = {objective.name!r} only"
        )
    return objective


def build_task(config: ml_collections.ConfigDict) -> Task:
    factory = config.task.get("factory")
    if factory:
        return _load(factory)(config)
    return resolve(config).task(config)


def pipeline_objective(name: str):
    """The data half of the objective a pipeline config names (canonical or unambiguous alias)."""
    if name in _MODULES:
        return get(name).data
    return _by_name(name, None, "pipeline objective").data


def build_pipeline(source: Sequence[Any], cfg, tokenizer_dir: str):
    """mathjax_vl.data.pipelines.build_pipeline for `cfg.objective` looked up by name."""
    from mathjax_vl.data import pipelines

    data = pipeline_objective(cfg.objective)
    cfg = dataclasses.replace(cfg, objective=data.name)
    return pipelines.build_pipeline(source, cfg, tokenizer_dir, data)


__all__ = ["Objective", "Task", "build_pipeline", "build_task", "get", "names", "resolve"]
