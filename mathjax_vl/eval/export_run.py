"""Export a training run (trainer checkpoints + its stage config) to a Hugging Face directory.

The trainer saves the train state only ({step, trainable, frozen, opt_state} under
RUN_DIR/checkpoints/<step>/state), not the architecture, so the stage config is needed too: the
file given (`configs/x.py[:arg]` plus the run's `--config.*` overrides) or, by default,
RUN_DIR/config.py, which the trainer writes beside its checkpoints. The model
tree is trainable + frozen (the optimizer state is never read) and is written by
`hf.registry.save_hf` for the registry kind of the run's model config: any decoder kind ->
its *ForCausalLM (Qwen2, Qwen3, Llama, Mistral), vlm -> LlavaForConditionalGeneration (any
tower + decoder), dual_encoder (MAVIS CLIP-Math with the CLIP loss) -> CLIPModel. A dual encoder
trained with the sigmoid loss is refused: its learned logit bias has no slot in CLIPModel, and
dropping it would change what the exported model computes. (This lives in eval/ because it reads
trainer checkpoints and stage configs, which hf/ must not import.)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

RUN_CONFIG_FILE = "config.py"


class RunExportError(ValueError):
    """Bad run dir / step / config; the message names the directory, step or kind."""


@dataclasses.dataclass(frozen=True)
class RunParams:
    """One restored checkpoint: registry kind, model config dataclass, params tree, provenance."""

    kind: str
    config: Any
    params: Any
    step: int
    checkpoint_dir: str
    train_config: str
    tokenizer_dir: str | None  # the stage config's data.tokenizer_dir, if it names one


def resolve_train_config(run_dir: str, train_config: str | None) -> str:
    """The stage config to read: the one given, else RUN_DIR/config.py (written by the trainer)."""
    if train_config:
        return train_config
    candidate = os.path.join(run_dir, RUN_CONFIG_FILE)
    if os.path.isfile(candidate):
        return candidate
    raise RunExportError(
        f"{run_dir}: no {RUN_CONFIG_FILE} in the run dir (the trainer writes one; checkpoints "
        "alone store no model config); pass the stage's config with --train-config "
        "configs/x.py (and the run's "
        "--config.* overrides with --train-override KEY=VALUE)"
    )


def load_run(
    run_dir: str,
    train_config: str | None = None,
    overrides: Sequence[str] = (),
    step: int | None = None,
) -> RunParams:
    """Restores the newest complete checkpoint of a run (or `step`) as a model params tree."""
    import jax
    import numpy as np
    from flax import traverse_util

    from mathjax_vl.eval.loading import (
        abstract_params,
        checkpoint_dir,
        model_for_config,
        resolve_step,
        restore_train_params,
    )
    from mathjax_vl.hf import registry as hf_registry
    from mathjax_vl.models import build, registry
    from mathjax_vl.train.config_loader import load_config

    if not os.path.isdir(run_dir):
        raise RunExportError(f"training run dir {run_dir} does not exist")
    spec = resolve_train_config(run_dir, train_config)
    try:
        config = load_config(spec, list(overrides))
    except (FileNotFoundError, AttributeError, KeyError, TypeError, ValueError) as err:
        raise RunExportError(f"stage config {spec}: {err}") from err
    try:
        model_kind = build.model_kind(config.model)
        cfg, module = model_for_config(config)
        hf_kind = registry.kind_of(cfg)
        hf_registry.get(hf_kind)
    except (KeyError, ValueError) as err:
        exportable = [k for k in hf_registry.kinds() if registry.get(k).role != "tower"]
        raise RunExportError(
            f"{spec}: model.kind {config.model.get('kind')!r} cannot be exported to Hugging "
            f"Face ({err}); exportable: decoder kinds, vlm, dual_encoder (kinds {exportable})"
        ) from err
    with_bias = build.CONTRASTIVE_LOSSES[build.contrastive_loss(config)]
    if model_kind == build.DUAL_ENCODER_KIND and with_bias:
        raise RunExportError(
            f"{spec}: model.kind 'dual_encoder' trained with loss.contrastive "
            f"{config.loss.contrastive!r} cannot be exported: its learned logit_bias has no "
            "slot in CLIPModel (only the CLIP loss's dual encoder exports, as CLIPModel)"
        )
    ckpt_dir = checkpoint_dir(run_dir)
    if ckpt_dir is None:
        raise RunExportError(
            f"{run_dir}: no checkpoints/<step>/ directories (expected a `mathjax-vl train "
            "--workdir` dir or its checkpoints/ dir)"
        )
    step = resolve_step(ckpt_dir, step, RunExportError)
    flat = restore_train_params(ckpt_dir, step, abstract_params(config, cfg, module))
    params = traverse_util.unflatten_dict(jax.tree.map(np.asarray, flat), sep="/")
    if model_kind == build.DUAL_ENCODER_KIND:
        params = params[build.DUAL_ENCODER_SCOPE]
    tok = config.get("data", {}).get("tokenizer_dir") or None
    return RunParams(hf_kind, cfg, params, step, ckpt_dir, spec, tok)


def export_run(
    run_dir: str,
    out: str,
    *,
    train_config: str | None = None,
    overrides: Sequence[str] = (),
    step: int | None = None,
    tokenizer_dir: str | None = None,
    dtype: str | None = None,
    max_shard_size: int | str | None = None,
) -> tuple[RunParams, list[str]]:
    """load_run + registry.save_hf; tokenizer files come from `tokenizer_dir`, else from the
    config's data.tokenizer_dir when that exists. dtype: of the written tensors; by default the
    dtype of the weights the run started from (a one-line notice says so when the trained
    params differ). Tensors are converted and written one at a time, shard by shard.
    Returns the run params and the files written."""
    from mathjax_vl.hf import registry, streaming

    run = load_run(run_dir, train_config, overrides, step)
    tok = tokenizer_dir
    if tok is not None and not os.path.isdir(tok):
        raise RunExportError(f"tokenizer dir {tok}: not a directory")
    if tok is None and run.tokenizer_dir and os.path.isdir(run.tokenizer_dir):
        tok = run.tokenizer_dir
    dtype = streaming.export_dtype(
        dtype, run.params, source_dtype(run_dir, train_config, overrides), run_dir
    )
    params = streaming.cast_lazily(run.params, dtype)
    with streaming.lazy(max_shard_size):
        files = registry.save_hf(run.kind, run.config, params, out, tokenizer_dir=tok)
    return run, files


def source_dtype(
    run_dir: str, train_config: str | None = None, overrides: Sequence[str] = ()
) -> str | None:
    """The dtype of the weights the run started from (its init.hf_dir: the source dtype an
    import recorded, or an HF dir's own), when all its directories agree; else None."""
    from mathjax_vl.hf import checkpoint
    from mathjax_vl.hf.common import CheckpointReader, ConversionError
    from mathjax_vl.train.config_loader import load_config
    from mathjax_vl.train.hf_init import hf_dirs

    config = load_config(resolve_train_config(run_dir, train_config), list(overrides))
    hf_dir = (config.get("init") or {}).get("hf_dir") or ()
    found = set()
    for d in hf_dirs(hf_dir):
        try:
            if checkpoint.is_checkpoint(d):
                found.add(checkpoint.read_meta(d).get("source_dtype"))
            else:
                found.add(CheckpointReader(d).source_dtype())
        except (ConversionError, OSError):
            found.add(None)
    return found.pop() if len(found) == 1 else None
