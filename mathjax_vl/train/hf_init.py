"""Initialise a stage from Hugging Face weights (or a `mathjax-vl import-hf` checkpoint).

`init.hf_dir` may be one directory or a list: each is loaded by mathjax_vl.hf.registry and placed
in the task's parameter tree where the model registry says it sits (`placement`): a directory of
the model's own kind fills the whole tree; inside a VLM a decoder (any registered kind) fills
`language_model` and a tower `vision_tower` (each part's registry `scope`); a CLIP dir fills the
dual encoder's `clip` scope. Parameters no directory provides keep their fresh initialisation
and are listed in the log. HF import reads whole tensors on each host: for 7B-class models
import once with `mathjax-vl import-hf` and start from that checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import ml_collections
import numpy as np
from flax import traverse_util

log = logging.getLogger(__name__)


def placement(config: ml_collections.ConfigDict, model_cfg: Any, kind: str, path: str) -> str:
    """Prefix of a `kind` tree inside the task's params ("" = the whole tree), from the model
    registry: the same kind -> "", a composite's part -> that part's scope. The kind must also
    match the part's configured kind (a Llama dir cannot fill a Qwen2 language model)."""
    from mathjax_vl.models import build, registry

    src = registry.get(kind)
    if build.model_kind(config.model) == build.DUAL_ENCODER_KIND:
        if src.kind == registry.kind_of(model_cfg):
            return build.DUAL_ENCODER_SCOPE
    elif src.kind == registry.kind_of(model_cfg):
        return ""
    elif registry.spec_of(model_cfg).role == "composite":
        parts = {
            registry.kind_of(getattr(model_cfg, f.name)): f.name
            for f in dataclasses.fields(model_cfg)
            if dataclasses.is_dataclass(getattr(model_cfg, f.name))
        }
        if src.kind in parts and src.scope is not None:
            return src.scope
    raise ValueError(
        f"{path}: a {kind!r} model cannot initialise model.kind="
        f"{config.model.get('kind')!r} (model {registry.kind_of(model_cfg)!r}); it accepts "
        f"{sorted(accepted_kinds(config, model_cfg))}"
    )


def accepted_kinds(config: ml_collections.ConfigDict, model_cfg: Any) -> set[str]:
    from mathjax_vl.models import registry

    kinds = {registry.kind_of(model_cfg)}
    if registry.spec_of(model_cfg).role == "composite":
        kinds |= {
            registry.kind_of(getattr(model_cfg, f.name))
            for f in dataclasses.fields(model_cfg)
            if dataclasses.is_dataclass(getattr(model_cfg, f.name))
            and registry.spec_of(getattr(model_cfg, f.name)).role != "projector"
        }
    return kinds


def load_params(config: ml_collections.ConfigDict, hf_dir: Any, fresh: Any) -> Any:
    """Fresh params with every tensor the HF directories provide replaced (shapes checked)."""
    from mathjax_vl.hf import registry
    from mathjax_vl.models.build import model_config

    dirs = [hf_dir] if isinstance(hf_dir, str) else list(hf_dir)
    model_cfg = model_config(config.model)
    flat = traverse_util.flatten_dict(fresh, sep="/")
    provided: set[str] = set()
    for path in dirs:
        if registry.is_checkpoint(path):
            kind, _, params = registry.load_checkpoint(path)
        else:
            kind, _, params = registry.load_hf(path)
        prefix = placement(config, model_cfg, kind, path)
        for key, value in traverse_util.flatten_dict(params, sep="/").items():
            ours = f"{prefix}/{key}" if prefix else key
            if ours not in flat:
                raise KeyError(f"{path}: tensor for {ours!r} has no place in the model")
            want = np.shape(flat[ours])
            if tuple(np.shape(value)) != tuple(want):
                raise ValueError(f"{path}: {ours} expected shape {want}, found {np.shape(value)}")
            flat[ours] = np.asarray(value)
            provided.add(ours)
    fresh_left = sorted(set(flat) - provided)
    if fresh_left:
        log.warning("%d parameters keep their fresh init: %s", len(fresh_left), fresh_left[:10])
    return traverse_util.unflatten_dict(flat, sep="/")
