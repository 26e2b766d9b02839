"""Multi-source stage initialisation: a stage's parameters filled from several sources at once.

A source is a training run (its checkpoints/ dir or the run dir), a Hugging Face directory, or
our `mathjax-vl import-hf` checkpoint dir, each with where its tensors go:

  path    the directory (kind detected: trainer checkpoints, our checkpoint, an HF config.json)
  step    training runs only: that checkpoint step (default: the newest complete one)
  take    a subtree of the source to use, e.g. "clip/vision_model" of a CLIP-Math run or
          "vision_model" of a SiglipModel dir (default "": all of it); its prefix is removed
  rename  [(regex, replacement), ...] applied in order to each key after `take`
  into    the target prefix, or a list of them: one source may fill several subtrees (a DPO
          policy and its frozen reference from one checkpoint). Default: a training run "" (the
          same paths); an HF / our dir where the model registry places its kind (hf_init)
  name    a label for the log and errors (default: path)

The target of source key k is `into/rename(k minus take)`. Every parameter of the model must be
filled by exactly one source or match `init.allow_missing` (then it keeps its fresh init): a
parameter nothing fills is an error naming it, one that two sources fill is an error naming the
key and both sources, and a shape that differs is an error naming source key, target and shapes.
Source tensors that land on no parameter are not used (their count is logged). Each parameter
is read straight into its sharding (hf_init.place for directories, orbax partial restore for
runs), so no host holds a whole sharded tensor.

The config (train/config_base.py) is `init.sources`, a list of such dicts; the older single-source
fields `init.checkpoint` (+ `init.step`, `init.rename`) and `init.hf_dir` are read as sources too.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from flax import traverse_util

from mathjax_vl.errors import ConfigError, ConfigKeyError

log = logging.getLogger(__name__)

FIELDS = ("path", "step", "take", "rename", "into", "name")


@dataclasses.dataclass(frozen=True)
class Source:
    path: str
    step: int | None = None
    take: str = ""
    rename: tuple[tuple[str, str], ...] = ()
    into: tuple[str, ...] | None = None  # None: the source kind's default placement
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.path


@dataclasses.dataclass
class InitReport:
    """What filled what: target param -> source label, and the fresh (allowed-missing) ones."""

    filled: dict[str, str]
    fresh: list[str]
    unused: dict[str, int]  # source label -> tensors of it that landed on no parameter
    subtrees: list[tuple[str, str, int]]  # (subtree, source label or "fresh", parameters)

    def lines(self) -> list[str]:
        out = [f"init: {sub} <- {src} ({n} params)" for sub, src, n in self.subtrees]
        out += [f"init: {n} tensors of {src} unused" for src, n in self.unused.items() if n]
        return out


def _prefix(p: str) -> str:
    return p.strip("/")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if prefix and key else prefix or key


def parse_source(entry: Any, where: str) -> Source:
    """One `init.sources` entry (dict / ConfigDict, or a bare path string) -> Source."""
    if isinstance(entry, str):
        entry = {"path": entry}
    if isinstance(entry, ml_collections.ConfigDict):
        entry = entry.to_dict()
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a dict with 'path' (and {FIELDS[1:]}), got {entry!r}")
    unknown = sorted(set(entry) - set(FIELDS))
    if unknown:
        raise ConfigKeyError(f"{where}: unknown field(s) {unknown}; a source has {list(FIELDS)}")
    if not entry.get("path"):
        raise ConfigKeyError(f"{where}: no 'path' (a training run, HF or checkpoint directory)")
    into = entry.get("into")
    if into is not None:
        into = (into,) if isinstance(into, str) else tuple(into)
        if not into or not all(isinstance(p, str) for p in into):
            raise ConfigError(f"{where}: 'into' must be a prefix or a list of them, got {into!r}")
        into = tuple(_prefix(p) for p in into)
    rename = []
    for rule in entry.get("rename") or ():
        if not isinstance(rule, (list, tuple)) or len(rule) != 2:
            raise ConfigError(f"{where}: rename rule {rule!r} is not a (regex, replacement) pair")
        try:
            re.compile(rule[0])
        except re.error as err:
            raise ConfigError(f"{where}: rename regex {rule[0]!r}: {err}") from err
        rename.append((str(rule[0]), str(rule[1])))
    step = entry.get("step")
    return Source(
        path=str(entry["path"]),
        step=None if step is None else int(step),
        take=_prefix(str(entry.get("take") or "")),
        rename=tuple(rename),
        into=into,
        name=str(entry.get("name") or ""),
    )


def sources_of(init: Mapping | None) -> list[Source]:
    """The sources a config's `init` block names: init.sources, then the single-source fields
    init.checkpoint (+ step, rename; same paths) and init.hf_dir (each dir where it fits)."""
    from mathjax_vl.train.hf_init import hf_dirs

    init = init or {}
    out = [parse_source(e, f"init.sources[{i}]") for i, e in enumerate(init.get("sources") or [])]
    if init.get("checkpoint"):
        out.append(
            Source(
                path=str(init["checkpoint"]),
                step=init.get("step"),
                rename=tuple(tuple(r) for r in init.get("rename") or ()),
                into=("",),
                name="init.checkpoint",
            )
        )
    elif init.get("rename"):
        raise ConfigError(
            "init.rename is set but init.checkpoint is not (put rename rules on a source)"
        )
    for d in hf_dirs(init.get("hf_dir") or ""):
        out.append(Source(path=d, name=f"init.hf_dir {d}"))
    return out


# ---- opening a source: its flat tensors (lazy) and how to read them into a target ----------


@dataclasses.dataclass
class _Opened:
    source: Source
    shapes: dict[str, tuple[int, ...]]  # source key -> shape
    default_into: tuple[str, ...]
    read: Any  # read(wanted: {source key: [target like]}) -> {source key: [arrays]}
    what: str  # for the log: "run step 100", "HF qwen2", ...


def _open_run(source: Source, ckpt_dir: Any) -> _Opened:
    from mathjax_vl.train import checkpointing

    step, meta = checkpointing.run_param_shapes(ckpt_dir, source.step)

    def read(wanted: dict[str, list[Any]]) -> dict[str, list[Any]]:
        # one orbax restore per copy: two subtrees filled from one key get their own buffers
        out: dict[str, list[Any]] = {k: [] for k in wanted}
        for copy in range(max((len(v) for v in wanted.values()), default=0)):
            batch = {k: (meta[k][0], v[copy]) for k, v in wanted.items() if copy < len(v)}
            for k, v in checkpointing.restore_run_params(ckpt_dir, step, batch).items():
                out[k].append(v)
        return out

    shapes = {k: tuple(v[1]) for k, v in meta.items()}
    return _Opened(source, shapes, ("",), read, f"run {ckpt_dir} step {step}")


def _open_dir(source: Source, config: Any, model_cfg: Any) -> _Opened:
    import numpy as np

    from mathjax_vl.hf import registry
    from mathjax_vl.train.hf_init import place, placement

    kind, _, params, _ = registry.open_any(source.path)
    flat = traverse_util.flatten_dict(params, sep="/")
    default = None
    if source.into is None:
        default = (placement(config, model_cfg, kind, source.path),)

    def read(wanted: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {
            k: [place(flat[k], like, f"{source.label}: {k}") for like in likes]
            for k, likes in wanted.items()
        }

    shapes = {k: tuple(np.shape(v)) for k, v in flat.items()}
    return _Opened(source, shapes, default or ("",), read, f"{kind} dir {source.path}")


def open_source(source: Source, config: Any, model_cfg: Any) -> _Opened:
    """A source opened lazily (metadata only); its kind is found from the directory's files."""
    from mathjax_vl.hf import registry
    from mathjax_vl.train import checkpointing

    if not os.path.isdir(source.path):
        raise ConfigError(f"init source {source.label}: {source.path} is not a directory")
    if registry.is_checkpoint(source.path):
        return _open_dir(source, config, model_cfg)
    ckpt_dir = checkpointing.run_checkpoint_dir(source.path)  # a run dir holds a config.json too
    if ckpt_dir is None and os.path.exists(os.path.join(source.path, "config.json")):
        return _open_dir(source, config, model_cfg)
    if ckpt_dir is None:
        raise ConfigError(
            f"init source {source.label}: {source.path} is neither a training run (no "
            "checkpoints/<step>/), a mathjax-vl checkpoint nor an HF dir (no config.json)"
        )
    return _open_run(source, ckpt_dir)


def targets(opened: _Opened) -> dict[str, list[str]]:
    """Source key -> the target parameter paths it fills (take, rename, into applied)."""
    src = opened.source
    into = src.into if src.into is not None else opened.default_into
    out: dict[str, list[str]] = {}
    for key in opened.shapes:
        if src.take and not (key == src.take or key.startswith(src.take + "/")):
            continue
        new = key[len(src.take) :].lstrip("/") if src.take else key
        for pattern, repl in src.rename:
            new = re.sub(pattern, repl, new)
        out[key] = [_join(p, new) for p in into]
    return out


def _subtree(target: str, into: Sequence[str]) -> str:
    for p in sorted(into, key=len, reverse=True):
        if p and (target == p or target.startswith(p + "/")):
            return p + "/"
    return target.split("/", 1)[0] + "/"


def fill(
    config: Any, fresh: Any, sources: Sequence[Source], allow_missing: Sequence[str] = ()
) -> tuple[Any, InitReport]:
    """`fresh` params (jax arrays, sharded as training wants) with every parameter the sources
    fill replaced by its load; checks coverage, overlaps and shapes (module docstring)."""
    import numpy as np

    from mathjax_vl.models.build import model_config

    flat = traverse_util.flatten_dict(fresh, sep="/")
    model_cfg = model_config(config.model)
    opened = [open_source(s, config, model_cfg) for s in sources]
    owner: dict[str, tuple[str, str]] = {}  # target -> (source label, source key)
    plan: list[dict[str, list[str]]] = []
    unused: dict[str, int] = {}
    for op in opened:
        label, mine = op.source.label, {}
        skipped = len(op.shapes)
        for key, outs in targets(op).items():
            hits = [t for t in outs if t in flat]
            skipped -= 1 if hits else 0
            for t in hits:
                if t in owner:
                    other, other_key = owner[t]
                    raise ConfigError(
                        f"init: parameter {t!r} is filled twice: by {other} ({other_key}) and by "
                        f"{label} ({key}); narrow a source with take / rename / into"
                    )
                want, got = tuple(np.shape(flat[t])), op.shapes[key]
                if want != got:
                    raise ConfigError(
                        f"init source {label}: {key} -> {t}: expected shape {want}, found {got}"
                    )
                owner[t] = (label, key)
                mine.setdefault(key, []).append(t)
        plan.append(mine)
        unused[label] = skipped
    allow = [re.compile(p) for p in allow_missing]
    missing = sorted(k for k in flat if k not in owner)
    bad = [k for k in missing if not any(p.search(k) for p in allow)]
    if bad:
        raise ConfigKeyError(
            f"init: no source fills parameters {bad[:5]} (of {len(bad)}; sources: "
            f"{[s.label for s in sources]}); add init.allow_missing patterns to initialise them "
            "fresh, or a source (init.sources) that fills them"
        )
    for op, mine in zip(opened, plan):
        loaded = op.read({k: [flat[t] for t in ts] for k, ts in mine.items()})
        for key, ts in mine.items():
            for t, value in zip(ts, loaded[key]):
                flat[t] = value
    report = _report(opened, plan, owner, missing, unused)
    for line in report.lines():
        log.info("%s", line)
    return traverse_util.unflatten_dict(flat, sep="/"), report


def _report(opened, plan, owner, missing, unused) -> InitReport:
    counts: dict[tuple[str, str], int] = {}
    for op, mine in zip(opened, plan):
        into = op.source.into if op.source.into is not None else op.default_into
        label = f"{op.source.label} [{op.what}]"
        for t in (t for ts in mine.values() for t in ts):
            key = (_subtree(t, into), label)
            counts[key] = counts.get(key, 0) + 1
    for t in missing:
        key = (t.split("/", 1)[0] + "/", "fresh init (allow_missing)")
        counts[key] = counts.get(key, 0) + 1
    return InitReport(
        filled={t: src for t, (src, _) in owner.items()},
        fresh=missing,
        unused=unused,
        subtrees=[(sub, src, n) for (sub, src), n in counts.items()],
    )
