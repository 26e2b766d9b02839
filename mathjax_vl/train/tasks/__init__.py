"""Objectives for the one trainer; `build_task(config)` picks one by `config.task.name`.

Names: sft (text or multimodal next-token SFT), puma_kl (paired KL alignment), contrastive
(CLIP/SigLIP dual encoder), image_to_code (image -> code SFT). `config.task.factory =
"package.module:callable"` plugs in an objective defined elsewhere (callable(config) -> Task).
"""

from __future__ import annotations

import importlib

import ml_collections

from mathjax_vl.train.tasks.base import Task

_REGISTRY = {
    "sft": "mathjax_vl.train.tasks.sft:make_task",
    "puma_kl": "mathjax_vl.train.tasks.puma_kl:make_task",
    "contrastive": "mathjax_vl.train.tasks.contrastive:make_task",
    "image_to_code": "mathjax_vl.train.tasks.image_to_code:make_task",
    "preference": "mathjax_vl.train.tasks.preference:make_task",
}


def _load(target: str):
    module, _, attr = target.partition(":")
    if not attr:
        raise ValueError(f"task factory {target!r} must look like 'package.module:callable'")
    return getattr(importlib.import_module(module), attr)


def build_task(config: ml_collections.ConfigDict) -> Task:
    factory = config.task.get("factory")
    if factory:
        return _load(factory)(config)
    name = config.task.name
    if name not in _REGISTRY:
        raise ValueError(f"unknown task.name {name!r}; choose from {sorted(_REGISTRY)}")
    return _load(_REGISTRY[name])(config)


__all__ = ["Task", "build_task"]
