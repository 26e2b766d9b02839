"""Load a model for generation: an HF directory or one of our training checkpoints.

A `ModelHandle` is everything generation needs and nothing more: the architecture config, the
parameters (unboxed arrays), the tokenizer directory and, for a VLM, how to preprocess images.

Sources, told apart by what is on disk:
- a mathjax-vl checkpoint (`mathjax_vl_model.json` + `params/`, written by `mathjax-vl import-hf`,
  mathjax_vl.hf.registry): its VLM / decoder config and params; tokenizer and
  `preprocessor_config.json` from the same directory (import-hf copies them) unless given;
- an HF directory (`config.json` with `architectures`) of any registered decoder
  (`Qwen2ForCausalLM`, `Qwen3ForCausalLM`, `LlamaForCausalLM`, `MistralForCausalLM`, ...) or a
  `LlavaForConditionalGeneration` of any registered tower + decoder, loaded through
  mathjax_vl.hf.registry; the tokenizer defaults to the same directory, image preprocessing to
  its `preprocessor_config.json` (else the tower's own resolution / mean / std);
- a training run (`<workdir>` holding `checkpoints/<step>/`, or a `checkpoints/` dir itself): the
  trainer stores the train state only (no model config), so the stage's config file must be given
  (`train_config`, the same `configs/x.py[:arg]` the run used, plus its `--config.*` overrides); the
  newest complete step is used unless `step` says otherwise.

With `mesh` (a mathjax_vl.eval.sharded.GenerationMesh) the parameters are restored straight onto
that mesh with the training logical-axis rules: HF / mathjax-vl checkpoint tensors are read lazily,
region by region into each device's shard; a trainer checkpoint is restored by orbax with the
target shardings. Without it they are host arrays (the engine then places them on one device).
`dtype` is the parameter AND compute dtype of every part of the model ("bfloat16": bf16 weights,
activations and KV cache).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

# model registry roles that generate text -> ModelHandle.kind
GENERATOR_ROLES = {"composite": "vlm", "decoder": "decoder"}


def generator_kind(kind: str) -> str | None:
    """ModelHandle.kind ("vlm" / "decoder") of a registered model kind, None if it does not
    generate text."""
    from mathjax_vl.models import registry

    return GENERATOR_ROLES.get(registry.get(kind).role)


@dataclasses.dataclass(frozen=True)
class ModelHandle:
    """A loaded generator: `kind` "vlm" (VLMConfig) or "decoder" (any decoder config)."""

    kind: str
    config: Any
    params: Any
    tokenizer_dir: str
    image_processing: Any = None  # ImageProcessingConfig for a VLM, None for a decoder
    source: str = ""
    mesh: Any = None  # the GenerationMesh the params were placed on (None: host arrays)

    @property
    def is_vlm(self) -> bool:
        """Whether the model takes images (its registry role is a composite)."""
        from mathjax_vl.models import registry

        return registry.spec_of(self.config).role == "composite"

    @property
    def text_config(self) -> Any:
        return self.config.text if self.is_vlm else self.config


class ModelLoadError(ValueError):
    """The path is not a loadable model; the message names the path and what was expected."""


def _image_processing_for(cfg: Any, hf_dir: str | None) -> Any:
    from mathjax_vl.data.image_processing import ImageProcessingConfig

    if hf_dir and os.path.exists(os.path.join(hf_dir, "preprocessor_config.json")):
        return ImageProcessingConfig.from_hf_dir(hf_dir)
    return ImageProcessingConfig.for_tower(cfg.vision)


def _check_tokenizer_dir(path: str, model_path: str) -> str:
    if not os.path.exists(os.path.join(path, "tokenizer.json")):
        raise ModelLoadError(
            f"no tokenizer.json in {path} (tokenizer for model {model_path}); pass --tokenizer DIR "
            "with a Hugging Face fast tokenizer"
        )
    return path


def generator_architectures() -> list[str]:
    from mathjax_vl.hf import registry as hf_registry

    return sorted(a for role in GENERATOR_ROLES for a in hf_registry.architectures(role))


def _placed(cfg: Any, params: Any, dtype: str, mesh: Any) -> tuple[Any, Any]:
    """(config with `dtype` compute, params on `mesh` in `dtype`) - or host params, no mesh."""
    from mathjax_vl.eval.sharded import with_compute_dtype

    cfg = with_compute_dtype(cfg, dtype)
    if mesh is None:
        import jax
        import numpy as np

        from mathjax_vl.hf import streaming

        cast = lambda x: x.astype(dtype) if np.issubdtype(x.dtype, np.floating) else x
        return cfg, jax.tree.map(cast, streaming.materialize(params))
    return cfg, mesh.place(cfg, params, dtype)


def load_hf_dir(
    path: str, tokenizer_dir: str | None = None, dtype: str = "float32", mesh: Any = None
):
    """An HF directory of any registered decoder or VLM -> ModelHandle."""
    from mathjax_vl.hf import common
    from mathjax_vl.hf import registry as hf_registry

    hf_cfg = common.read_config(path)
    common.check_architecture(hf_cfg, generator_architectures(), path)
    model_kind = hf_registry.detect_kind(path)
    _, cfg, params, _ = hf_registry.open_any(path, dtype=dtype, param_dtype=dtype)
    cfg, params = _placed(cfg, params, dtype, mesh)
    kind, processing = generator_kind(model_kind), None
    if GENERATOR_ROLES["composite"] == kind:
        processing = _image_processing_for(cfg, tokenizer_dir or path)
        if tokenizer_dir and not os.path.exists(
            os.path.join(tokenizer_dir, "preprocessor_config.json")
        ):
            processing = _image_processing_for(cfg, path)
    tok = _check_tokenizer_dir(tokenizer_dir or path, path)
    return ModelHandle(kind, cfg, params, tok, processing, source=path, mesh=mesh)


def load_mathjax_checkpoint(
    path: str, tokenizer_dir: str | None = None, dtype: str = "float32", mesh: Any = None
) -> ModelHandle:
    """A checkpoint written by `mathjax-vl import-hf` (mathjax_vl.hf.registry's format)."""
    from mathjax_vl.hf import registry

    kind, cfg, params, _ = registry.open_checkpoint(path)
    handle_kind = generator_kind(kind)
    if handle_kind is None:
        raise ModelLoadError(f"{path}: a {kind!r} checkpoint does not generate text")
    cfg, params = _placed(cfg, params, dtype, mesh)
    tok = _check_tokenizer_dir(tokenizer_dir or path, path)
    processing = (
        _image_processing_for(cfg, path) if handle_kind == GENERATOR_ROLES["composite"] else None
    )
    return ModelHandle(handle_kind, cfg, params, tok, processing, source=path, mesh=mesh)


def checkpoint_dir(path: str) -> str | None:
    """The `checkpoints/` directory of a training run given the run dir or that dir itself."""
    for candidate in (os.path.join(path, "checkpoints"), path):
        if os.path.isdir(candidate) and any(
            name.isdigit() and os.path.isdir(os.path.join(candidate, name))
            for name in os.listdir(candidate)
        ):
            return candidate
    return None


def model_for_config(config: Any) -> tuple[Any, Any]:
    """(model config dataclass, flax module whose params the trainer's state holds)."""
    from mathjax_vl.models import build

    return build.train_module(config)


def abstract_params(config: Any, cfg: Any, module: Any) -> dict[str, Any]:
    """Flat {path: ShapeDtypeStruct} of the params training creates (the VLM: with an image)."""
    import flax.linen as nn
    import jax
    from flax import traverse_util

    from mathjax_vl.models import build

    args, kwargs = build.train_init_inputs(config, cfg)
    init = lambda: module.init(jax.random.key(0), *args, **kwargs)
    abstract = jax.eval_shape(lambda: nn.meta.unbox(init()))["params"]
    return traverse_util.flatten_dict(abstract, sep="/")


def load_train_checkpoint(
    path: str,
    train_config: str,
    overrides: list[str] | None = None,
    tokenizer_dir: str | None = None,
    step: int | None = None,
    dtype: str = "float32",
    mesh: Any = None,
):
    """A trainer checkpoint (state's trainable + frozen params) + its stage config -> handle."""
    from flax import traverse_util

    from mathjax_vl.train.config_loader import load_config

    ckpt_dir = checkpoint_dir(path)
    if ckpt_dir is None:
        raise ModelLoadError(f"{path}: no checkpoints/<step>/ directories found")
    from mathjax_vl.models import build, registry

    config = load_config(train_config, list(overrides or []))
    kind = build.model_kind(config.model)
    handle_kind = None if kind == build.DUAL_ENCODER_KIND else generator_kind(kind)
    if handle_kind is None:
        raise ModelLoadError(
            f"{train_config}: model.kind {kind!r} does not generate text (expected 'vlm' or a "
            f"decoder kind {list(registry.kinds('decoder'))})"
        )
    cfg, module = model_for_config(config)
    abstract = abstract_params(config, cfg, module)
    shardings = None
    if mesh is not None:  # restore straight into the generation mesh's shards
        targets = mesh.shardings(cfg)
        shardings = {k: targets[k].sharding for k in abstract if k in targets}
    restored = restore_train_params(ckpt_dir, step, abstract, shardings)
    cfg, params = _placed(cfg, traverse_util.unflatten_dict(restored, sep="/"), dtype, mesh)
    tok = tokenizer_dir or config.data.get("tokenizer_dir") or ""
    if not tok:
        raise ModelLoadError(
            f"{train_config}: no data.tokenizer_dir in the config; pass --tokenizer DIR"
        )
    tok = _check_tokenizer_dir(tok, path)
    vlm = handle_kind == GENERATOR_ROLES["composite"]
    processing = _image_processing_for(cfg, None) if vlm else None
    return ModelHandle(handle_kind, cfg, params, tok, processing, source=ckpt_dir, mesh=mesh)


def resolve_step(ckpt_dir: str, step: int | None, error: type[Exception] = ModelLoadError) -> int:
    """`step` if its checkpoint is complete (manifest + every listed file, the trainer's rule),
    or the newest complete step when None; `error` names the directory and the steps it has."""
    from mathjax_vl.train.checkpointing import Checkpointer

    manager = Checkpointer(ckpt_dir, interval=0, keep=0, async_save=False)
    try:
        steps = manager.all_steps()
        if step is not None and step in steps:  # verify (sizes + SHA-256) only the one asked for
            reason = manager.incomplete_reason(step)
            if reason is None:
                return step
            raise error(f"{ckpt_dir}: the checkpoint for step {step} is not complete: {reason}")
        # newest first, stopping at the first complete one (each check hashes its files)
        newest = next((s for s in reversed(steps) if manager.incomplete_reason(s) is None), None)
    finally:
        manager.manager.close()
    if newest is None:
        raise error(f"{ckpt_dir}: no complete checkpoint (none matches its manifest)")
    if step is None:
        return newest
    raise error(f"{ckpt_dir}: no checkpoint for step {step}; have {steps}")


def restore_train_params(
    ckpt_dir: str,
    step: int | None,
    abstract: dict[str, Any],
    shardings: dict[str, Any] | None = None,
) -> dict:
    """Flat {path: array} of the model's params from a trainer checkpoint's `state` item, each
    restored with its sharding from `shardings` (default: all on the first device).

    The trainer saves {step, trainable, frozen, opt_state}; only trainable + frozen are read
    (partial restore: the optimizer state, 2x the params for Adam, is never loaded). Reads the
    orbax item directly with its own PyTreeCheckpointer (written when
    train.checkpointing.restore_params_from still failed on this orbax version; that is fixed in
    9ce4ef7, this reader is kept because it needs no trainer Checkpointer state or shardings).
    """
    import jax
    import numpy as np
    import orbax.checkpoint as ocp
    from flax import traverse_util

    step = resolve_step(ckpt_dir, step)
    state_dir = os.path.join(ckpt_dir, str(step), "state")
    from mathjax_vl.train.checkpointing import item_reader

    with item_reader() as checkpointer:
        meta = checkpointer.metadata(state_dir)
        tree = getattr(meta, "item_metadata", meta)  # StepMetadata (newer orbax) or the tree
        tree = getattr(tree, "tree", tree)
        where = {}  # param path -> "trainable" | "frozen"
        for sub in ("trainable", "frozen"):
            for key in traverse_util.flatten_dict(dict(tree.get(sub) or {}), sep="/"):
                where[key] = sub
        missing = sorted(set(abstract) - set(where))
        if missing:
            raise ModelLoadError(
                f"{state_dir}: checkpoint lacks parameters {missing[:5]} (of {len(missing)}); is "
                "this the stage config the run was trained with?"
            )
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target: dict[str, dict] = {"trainable": {}, "frozen": {}}
        for key, a in abstract.items():
            sharding = (shardings or {}).get(key, device)
            target[where[key]][key] = jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding)
        item = {sub: traverse_util.unflatten_dict(v, sep="/") for sub, v in target.items() if v}
        restore_args = jax.tree.map(
            lambda a: ocp.ArrayRestoreArgs(
                sharding=a.sharding, global_shape=a.shape, dtype=a.dtype
            ),
            item,
        )
        restored = checkpointer.restore(
            state_dir,
            args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True),
        )
    flat = {}
    for tree_part in restored.values():
        for key, value in traverse_util.flatten_dict(tree_part, sep="/").items():
            if tuple(np.shape(value)) != tuple(abstract[key].shape):
                raise ModelLoadError(
                    f"{state_dir}: parameter {key}: expected shape {abstract[key].shape}, found "
                    f"{np.shape(value)}"
                )
            flat[key] = value
    return flat


def load_model(
    path: str,
    tokenizer_dir: str | None = None,
    *,
    train_config: str | None = None,
    config_overrides: list[str] | None = None,
    step: int | None = None,
    dtype: str = "float32",
    mesh: Any = None,
) -> ModelHandle:
    """Dispatch on what `path` holds (see the module docstring)."""
    if not os.path.exists(path):
        raise ModelLoadError(f"model path {path} does not exist")
    config_json = os.path.join(path, "config.json")
    if os.path.isfile(config_json):
        try:
            with open(config_json, encoding="utf-8") as f:
                hf = json.load(f)
        except (ValueError, UnicodeDecodeError) as err:
            raise ModelLoadError(f"{config_json}: not a valid JSON config ({err})") from None
        if not isinstance(hf, dict):
            raise ModelLoadError(
                f"{config_json}: expected a JSON object (an HF config), found {type(hf).__name__}"
            )
        if "architectures" in hf or "model_type" in hf:
            from mathjax_vl.hf.common import UnsupportedArchitectureError

            try:
                return load_hf_dir(path, tokenizer_dir, dtype, mesh)
            except UnsupportedArchitectureError as err:  # a config.json key: name the file
                message = str(err)
                for prefix in (f"{config_json}: ", f"{path}: "):
                    message = message.removeprefix(prefix)
                raise ModelLoadError(f"{config_json}: {message}") from None
            except (KeyError, TypeError) as err:  # a field missing or of the wrong type
                what = err.args[0] if isinstance(err, KeyError) and err.args else err
                raise ModelLoadError(
                    f"{config_json}: not a usable HF config ({type(err).__name__}: {what}); "
                    "expected the config.json that transformers' save_pretrained writes"
                ) from None
    from mathjax_vl.hf import registry

    if registry.is_checkpoint(path):
        return load_mathjax_checkpoint(path, tokenizer_dir, dtype, mesh)
    if checkpoint_dir(path) is not None:
        if not train_config:
            raise ModelLoadError(
                f"{path} is a training checkpoint, which stores parameters only: pass the stage's "
                "config with --train-config configs/x.py (and its --config.* overrides)"
            )
        return load_train_checkpoint(
            path, train_config, config_overrides, tokenizer_dir, step, dtype, mesh
        )
    raise ModelLoadError(
        f"{path}: not a model directory; expected an HF directory (config.json with "
        f"architectures {generator_architectures()}), a mathjax-vl checkpoint "
        "(mathjax_vl_model.json) or a training run (checkpoints/<step>/)"
    )
