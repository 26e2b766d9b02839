"""A run directory holds one run: resume refuses a config whose model or state differs from it.

Two checks, both before anything in the directory is written:
- `check_resume_config`: the fields that shape the model and the train state (STRUCTURE_KEYS)
  must equal those in the run's saved config.json; the error lists every differing field with
  both values. Other fields (num_steps, learning rate, checkpoint interval, ...) may change.
- `check_state_structure`: the newest complete checkpoint's saved arrays (path, shape, dtype)
  must be exactly the leaves of this config's abstract train state, which also catches runs
  that carry no config.json.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import ml_collections

from mathjax_vl.errors import UserError
from mathjax_vl.train import checkpointing

log = logging.getLogger(__name__)

# Fields whose change changes the parameters or the optimiser state's tree.
STRUCTURE_KEYS = ("model", "task", "optim.trainable", "optim.frozen")
_SHOWN = 8  # differences listed in a message


class RunMismatchError(UserError):
    """The config does not describe the run already in the run directory."""


def _plain(value: Any) -> Any:
    """JSON round trip: tuples -> lists, FieldReferences -> values (as config.json holds them)."""
    return json.loads(json.dumps(value, default=list))


def _flatten(tree: Any, prefix: str) -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def _subtree(d: dict, dotted: str) -> Any:
    node: Any = d
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def config_differences(
    saved: dict, current: dict, keys: tuple[str, ...] = STRUCTURE_KEYS
) -> list[str]:
    """'key: run has A, config has B' for every leaf under `keys` that differs."""
    diffs = []
    for key in keys:
        a = _flatten(_plain(_subtree(saved, key)), key)
        b = _flatten(_plain(_subtree(current, key)), key)
        for leaf in sorted(set(a) | set(b)):
            va, vb = a.get(leaf, "<absent>"), b.get(leaf, "<absent>")
            if va != vb:
                diffs.append(f"{leaf}: run has {va!r}, config has {vb!r}")
    return diffs


def check_resume_config(workdir: str | Path, config: ml_collections.ConfigDict) -> None:
    """Raise RunMismatchError if `workdir` holds a run whose structure fields differ."""
    path = Path(workdir) / "config.json"
    if not path.exists():
        return
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise RunMismatchError(
            f"{path}: the run's saved config is not readable JSON ({err}); it is needed to "
            "check the resume (restore it, or use a new --workdir)"
        ) from None
    current = _plain(config.to_dict())
    diffs = config_differences(saved, current)
    if diffs:
        more = f" (and {len(diffs) - _SHOWN} more)" if len(diffs) > _SHOWN else ""
        raise RunMismatchError(
            f"{workdir} holds a run whose model/state differs from this config: "
            f"{'; '.join(diffs[:_SHOWN])}{more}. Nothing was changed. Resume with the run's own "
            f"config (--config {Path(workdir) / 'config.py'}) or use a new --workdir"
        )
    changed = config_differences(saved, current, tuple(sorted(set(saved) | set(current))))
    if changed:
        log.info("resuming %s with changed settings: %s", workdir, "; ".join(changed))


def state_differences(
    expected: dict[str, tuple[tuple[int, ...], str]],
    found: dict[str, tuple[tuple[int, ...], str]],
) -> list[str]:
    """Leaf-level differences between this config's state (expected) and a checkpoint's."""
    only_found = sorted(found.keys() - expected.keys())
    only_expected = sorted(expected.keys() - found.keys())
    diffs = [f"{k}: in the checkpoint, not in this config's state" for k in only_found]
    diffs += [f"{k}: in this config's state, not in the checkpoint" for k in only_expected]
    for k in sorted(expected.keys() & found.keys()):
        (se, de), (sf, df) = expected[k], found[k]
        if se != sf or de != df:
            diffs.append(f"{k}: checkpoint has {df}{list(sf)}, config has {de}{list(se)}")
    return diffs


def check_state_structure(abstract_state: Any):
    """A `check(checkpointer, step)` for Checkpointer.restore_latest: the saved state's leaves
    must be this config's (names, shapes, dtypes), else RunMismatchError naming them."""
    expected = checkpointing.flat_shapes(checkpointing.state_dict(abstract_state))

    def check(ckpt: checkpointing.Checkpointer, step: int) -> None:
        try:
            found = ckpt.state_metadata(step)
        except Exception as err:  # metadata unreadable: the restore itself will say why
            log.debug("no state metadata for step %d: %s", step, err)
            return
        diffs = state_differences(expected, found)
        if diffs:
            more = f" (and {len(diffs) - _SHOWN} more)" if len(diffs) > _SHOWN else ""
            raise RunMismatchError(
                f"checkpoint {ckpt.directory / str(step)} holds a train state that differs from "
                f"this config's: {'; '.join(diffs[:_SHOWN])}{more}. Nothing was changed. Resume "
                "with the run's own config or use a new --workdir"
            )

    return check
