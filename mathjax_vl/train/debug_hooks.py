"""Trainer-side hooks that pin kills and preemptions to an exact step, so the tests of resume
after SIGKILL / SIGTERM do not depend on timing (config `debug.pause_after_step`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import ml_collections


def pause_marker(workdir: str | Path, step: int) -> Path:
    """The file the trainer writes when it pauses after `step`."""
    return Path(workdir) / f"paused_after_step_{step}.json"


def maybe_pause(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    step: int,
    stop_requested: Callable[[], bool],
    write_marker: bool = True,
    while_waiting: Callable[[], None] | None = None,
) -> None:
    """If `debug.pause_after_step == step`: write `pause_marker` (step logged, checkpoint saves
    before it already started) and block until `stop_requested()` (the SIGTERM flag). A test then
    sends SIGTERM (the trainer saves at exactly this step) or SIGKILL (it dies exactly here).
    `while_waiting` runs on every poll (the trainer's checkpoint poll, so an earlier async save
    still gets its COMPLETE.json while paused)."""
    target = int((config.get("debug") or {}).get("pause_after_step", 0))
    if not target or target != step:
        return
    if write_marker:
        marker = pause_marker(workdir, step)
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps({"step": step}))
        tmp.replace(marker)  # atomic: the test never reads a half-written marker
    while not stop_requested():
        if while_waiting is not None:
            while_waiting()
        time.sleep(0.01)
