"""Orbax checkpoints of the train state + the Grain iterator state, with completeness checks.

Layout: <workdir>/checkpoints/<step>/{state, data, meta} (orbax) plus `COMPLETE.json`, written
after the async save has finished, listing every file with its size and SHA-256. The hashes are
computed on a background thread (hashlib releases the GIL), so the training loop never waits for
them. Resume walks steps newest first and takes the first one whose manifest matches the files on
disk: a checkpoint truncated by a preemption mid-write, or corrupted without a size change, is
skipped with a warning naming the file, and the previous complete one is used. A checkpoint whose
files match its manifest but that still fails to restore is fatal (`CheckpointRestoreError`): it
is never renamed or overwritten, since the cause is the config, not the files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mathjax_vl.errors import UserError

log = logging.getLogger(__name__)

MANIFEST = "COMPLETE.json"
_HASH_CHUNK = 1 << 22  # 4 MiB reads: hashlib drops the GIL on each


class CheckpointRestoreError(UserError):
    """A checkpoint that is complete on disk but cannot be restored into this config's state."""


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks (hashlib releases the GIL: safe on a thread)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(step_dir: Path, step: int) -> None:
    """COMPLETE.json for a finished save: every file's size and SHA-256 (atomic replace)."""
    files, sums = {}, {}
    for p in sorted(step_dir.rglob("*")):
        if p.is_file() and not p.name.startswith(MANIFEST):
            rel = str(p.relative_to(step_dir))
            files[rel] = p.stat().st_size
            sums[rel] = file_sha256(p)
    tmp = step_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"step": step, "files": files, "sha256": sums}, indent=1))
    os.replace(tmp, step_dir / MANIFEST)


class _IterState:
    """Adapter between an iterator's state dict and grain's orbax handler (which stores bytes).

    The state is snapshotted at save time, so an async save cannot see later batches."""

    def __init__(self, state: dict | None = None):
        self.state = state

    def get_state(self) -> bytes:
        return json.dumps(self.state, indent=1).encode()

    def set_state(self, raw: bytes) -> None:
        self.state = json.loads(raw.decode())

    def start_prefetch(self) -> None:  # called by grain's handler after restore
        pass


def state_dict(state: Any) -> dict:
    """The saved form of a TrainState (also used to compare structures)."""
    return {
        "step": state.step,
        "trainable": state.trainable,
        "frozen": state.frozen,
        "opt_state": state.opt_state,
    }


def _abstract_with_shardings(abstract: Any, shardings: Any) -> Any:
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )


class Checkpointer:
    """CheckpointManager wrapper: async saves every `interval` steps, keep-last-N, manifests."""

    def __init__(self, directory: str | os.PathLike, interval: int, keep: int, async_save: bool):
        import grain.checkpoint as grain_ckpt
        import orbax.checkpoint as ocp

        self.directory = Path(directory).absolute()
        self.interval = int(interval)
        self._pending: int | None = None
        self._manifest_thread: threading.Thread | None = None
        self._manifest_error: BaseException | None = None
        self._ocp = ocp
        self._grain = grain_ckpt
        options = ocp.CheckpointManagerOptions(
            max_to_keep=int(keep) if keep else None,
            save_interval_steps=1,  # the trainer decides when to save
            enable_async_checkpointing=bool(async_save),
            create=True,
        )
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "data": grain_ckpt.CheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(),
            },
        )

    # ----------------------------------------------------------------------------- saving
    def should_save(self, step: int) -> bool:
        return self.interval > 0 and step % self.interval == 0

    def save(self, step: int, state: Any, data_state: dict | None, meta: dict) -> None:
        """Start an (async) save of `state` at `step`; the previous one is finalised first (and
        its manifest written, so keep-last-N never deletes a directory being hashed)."""
        self.finalize()
        self.join_manifest()
        args = self._ocp.args
        self.manager.save(
            step,
            args=args.Composite(
                state=args.StandardSave(state_dict(state)),
                data=self._grain.CheckpointSave(_IterState(data_state)),
                meta=args.JsonSave(meta),
            ),
            force=True,
        )
        self._pending = step

    def poll(self) -> None:
        """Write the manifest as soon as the background save has finished (called every step).

        Single-process only: with several processes `wait_until_finished` is collective, so the
        manifest is written at the next save or at close, when every process calls it."""
        if (
            jax.process_count() == 1
            and self._pending is not None
            and not self.manager.is_saving_in_progress()
        ):
            self.finalize()

    def finalize(self) -> None:
        """Wait for the in-flight save, then start its manifest (hashes) on a background
        thread (process 0); a previous manifest thread is joined first."""
        self.manager.wait_until_finished()
        if self._pending is None:
            return
        step, self._pending = self._pending, None
        self.join_manifest()
        step_dir = self.directory / str(step)
        if jax.process_index() == 0 and step_dir.exists():
            self._manifest_error = None
            self._manifest_thread = threading.Thread(
                target=self._write_manifest, args=(step_dir, step), name=f"manifest_{step}"
            )
            self._manifest_thread.start()

    def _write_manifest(self, step_dir: Path, step: int) -> None:
        try:
            write_manifest(step_dir, step)
        except BaseException as err:  # re-raised on the training thread by join_manifest
            self._manifest_error = err

    def join_manifest(self) -> None:
        """Block until the background manifest (if any) is written; re-raise its failure."""
        thread, self._manifest_thread = self._manifest_thread, None
        if thread is not None:
            thread.join()
        if self._manifest_error is not None:
            err, self._manifest_error = self._manifest_error, None
            raise err

    def close(self) -> None:
        try:
            self.finalize()
            self.join_manifest()
        finally:
            self.manager.close()

    # ---------------------------------------------------------------------------- restoring
    def all_steps(self) -> list[int]:
        if not self.directory.exists():
            return []
        return sorted(
            int(p.name)
            for p in self.directory.iterdir()
            if p.is_dir() and re.fullmatch(r"\d+", p.name)
        )

    def incomplete_reason(self, step: int, checksums: bool = True) -> str | None:
        """None if the checkpoint at `step` matches its manifest (every file present, same size
        and, unless checksums=False or the manifest predates them, same SHA-256), else why not."""
        step_dir = self.directory / str(step)
        manifest = step_dir / MANIFEST
        if not manifest.exists():
            return f"no {MANIFEST} (the save never finished)"
        try:
            data = json.loads(manifest.read_text())
            listed, sums = data["files"], data.get("sha256", {})
        except (ValueError, KeyError, TypeError) as err:
            return f"unreadable manifest {manifest}: {err}"
        for rel, size in listed.items():
            path = step_dir / rel
            if not path.exists():
                return f"file {path} is missing"
            if path.stat().st_size != size:
                return f"file {path} has {path.stat().st_size} bytes, manifest says {size}"
        if checksums:
            for rel, want in sums.items():
                got = file_sha256(step_dir / rel)
                if got != want:
                    return (
                        f"file {step_dir / rel} has SHA-256 {got[:16]}..., manifest says "
                        f"{want[:16]}... (corrupted in place)"
                    )
        return None

    def restore_latest(
        self, abstract_state: Any, shardings: Any, check: Any = None
    ) -> tuple[int, dict, dict | None, dict] | None:
        """(step, state dict, data state, meta) of the newest complete checkpoint, or None.

        A checkpoint that does not match its manifest is skipped with a warning naming it and
        set aside; one that matches but fails `check(self, step)` or the restore raises
        CheckpointRestoreError and is left exactly as it is."""
        for step in reversed(self.all_steps()):
            reason = self.incomplete_reason(step)
            if reason is None:
                if check is not None:
                    check(self, step)
                try:
                    return (step, *self.restore(step, abstract_state, shardings))
                except Exception as err:
                    raise CheckpointRestoreError(
                        f"checkpoint {self.directory / str(step)} is complete but does not restore "
                        f"into this config's train state ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}); resume it with the "
                        "run's own config (config.py in the run directory) or use a new --workdir"
                    ) from err
            message = (
                f"skipping checkpoint {self.directory / str(step)}: {reason}; "
                "falling back to the previous complete checkpoint"
            )
            log.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            self._set_aside(step)
        return None

    def state_metadata(self, step: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """Flat 'a/b/c' -> (shape, dtype) of the `state` item saved at `step` (no array read)."""
        meta = self.manager.item_metadata(step)["state"]
        tree = meta.tree if hasattr(meta, "tree") else meta
        return flat_shapes(tree)

    def _set_aside(self, step: int) -> None:
        """Rename a bad step dir to incomplete_<step>_<time> (kept for inspection) so the
        replayed run can save that step again."""
        if jax.process_index() == 0:
            src = self.directory / str(step)
            dst = self.directory / f"incomplete_{step}_{int(time.time())}"
            if src.exists():
                os.replace(src, dst)
                log.warning("moved %s to %s", src, dst)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"set_aside_{step}")
        self.manager.reload()

    def restore(self, step: int, abstract_state: Any, shardings: Any) -> tuple[dict, dict, dict]:
        args = self._ocp.args
        target = _abstract_with_shardings(state_dict(abstract_state), state_dict(shardings))
        holder = _IterState()
        restored = self.manager.restore(
            step,
            args=args.Composite(
                state=args.StandardRestore(target),
                data=self._grain.CheckpointRestore(holder),
                meta=args.JsonRestore(),
            ),
        )
        return restored["state"], holder.state, restored["meta"]


class _ItemDirMetadataFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Metadata file does not exist")


@contextlib.contextmanager
def item_reader() -> Iterator[Any]:
    """An orbax PyTreeCheckpointer for one item directory (<step>/state) of a checkpoint.

    Orbax looks for step-level metadata inside the item dir and logs "Metadata file does not
    exist" when it (rightly) finds none; that warning is dropped here, nothing else is."""
    import orbax.checkpoint as ocp

    absl_logger, quiet = logging.getLogger("absl"), _ItemDirMetadataFilter()
    absl_logger.addFilter(quiet)
    try:
        with ocp.PyTreeCheckpointer() as reader:
            yield reader
    finally:
        absl_logger.removeFilter(quiet)


def _key_name(entry: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def flat_shapes(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """'a/0/b' -> (shape, dtype) of every array leaf (dict keys, sequence indices and namedtuple
    fields all become path parts, so an abstract TrainState and orbax metadata compare)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        "/".join(_key_name(k) for k in path): (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
        for path, leaf in leaves
        if hasattr(leaf, "shape")
    }


def run_checkpoint_dir(directory: str | os.PathLike) -> Path | None:
    """The trainer's checkpoints/ dir of a run dir or of itself (numbered step dirs), else None."""
    directory = Path(directory).absolute()
    for candidate in (directory / "checkpoints", directory):
        if candidate.is_dir() and any(
            p.is_dir() and re.fullmatch(r"\d+", p.name) for p in candidate.iterdir()
        ):
            return candidate
    return None


def run_param_shapes(
    directory: str | os.PathLike, step: int | None = None
) -> tuple[int, dict[str, tuple[str, tuple[int, ...], str]]]:
    """(step, {param path: ("trainable" | "frozen", shape, dtype)}) of a trainer checkpoint:
    the newest complete one, or `step` (which must be complete). Nothing is read but metadata."""
    directory = Path(directory).absolute()
    ckpt = Checkpointer(directory, interval=0, keep=0, async_save=False)
    try:
        steps = ckpt.all_steps()
        if step is None:  # newest complete (each check hashes that checkpoint's files)
            step = next((s for s in reversed(steps) if ckpt.incomplete_reason(s) is None), None)
            if step is None:
                raise FileNotFoundError(
                    f"no complete checkpoint under {directory} (steps: {steps})"
                )
        elif int(step) not in steps or ckpt.incomplete_reason(int(step)) is not None:
            why = ckpt.incomplete_reason(int(step)) if int(step) in steps else "no such step"
            raise FileNotFoundError(
                f"no complete checkpoint for step {step} in {directory} ({why}; steps: {steps})"
            )
        meta = ckpt.manager.item_metadata(int(step))["state"]
    finally:
        ckpt.manager.close()
    tree = meta.tree if hasattr(meta, "tree") else meta
    out = {}
    for sub in ("trainable", "frozen"):
        for key, (shape, dtype) in flat_shapes(dict(tree.get(sub) or {})).items():
            out[key] = (sub, shape, dtype)
    return int(step), out


def restore_run_params(
    directory: str | os.PathLike,
    step: int,
    wanted: dict[str, tuple[str, Any]],
) -> dict[str, Any]:
    """Reads some parameters of a trainer checkpoint, each straight into its target sharding.

    wanted: param path -> (its subtree "trainable" | "frozen" in the checkpoint, a target with
    .shape / .dtype / .sharding, e.g. a ShapeDtypeStruct or the fresh array it replaces).
    Arrays are read shard by shard (orbax partial restore); the optimizer state is never read."""
    import orbax.checkpoint as ocp
    from flax import traverse_util

    target: dict[str, dict] = {"trainable": {}, "frozen": {}}
    for key, (sub, like) in wanted.items():
        target[sub][key] = jax.ShapeDtypeStruct(like.shape, like.dtype, sharding=like.sharding)
    nested = {s: traverse_util.unflatten_dict(v, sep="/") for s, v in target.items() if v}
    if not nested:
        return {}
    restore_args = jax.tree.map(
        lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding, global_shape=a.shape, dtype=a.dtype),
        nested,
    )
    # The manager registers "state" with StandardCheckpointHandler, which cannot restore a
    # subtree; the same files read through the PyTree handler can (partial_restore).
    with item_reader() as reader:
        restored = reader.restore(
            Path(directory).absolute() / str(step) / "state",
            args=ocp.args.PyTreeRestore(
                item=nested, restore_args=restore_args, partial_restore=True
            ),
        )
    flat = {s: traverse_util.flatten_dict(restored[s], sep="/") for s in nested}
    return {key: flat[sub][key] for key, (sub, _) in wanted.items()}
