"""Resumable, multi-process item loops (evaluation responses, codify outcomes).

A run over N items keeps one append-only JSONL file per process under `<out>/parts/`
(`<name>.<index>-of-<count>.jsonl`), one line per finished item: {"index", "key", ...payload}.
Each line is written with a single `write` on an O_APPEND descriptor and fsync'd per batch, so a
SIGKILL leaves at most one torn last line, which the next run ignores (and its own writer cuts
off before appending).

    rows = run_items(keys, out_dir, "responses", work, processes)

1. Every process reads every part file in `parts/` (whatever process count wrote them): an item
   whose index and key are there is done. A key that differs from the item's at that index means
   the parts were written for another item list: an error naming the file and line.
2. Barrier; then the remaining items are split deterministically: process p takes
   remaining[p::count] (strided, so each process gets long and short prompts alike).
3. `work(indices, append)` generates those items and calls `append(rows)` after each batch.
4. Barrier; process 0 reads all parts again and returns the rows in item order (None elsewhere).

So the merged result does not depend on the process count or on how often the run was killed
(greedy decoding: a row's tokens do not depend on the other rows of its batch). Processes come
from `jax.distributed` as in training (mathjax_vl.train.distributed); barriers are
`multihost_utils.sync_global_devices`.

Testing hook: with MATHJAX_VL_DEBUG_KILL_AFTER_ITEMS=n in the environment a process SIGKILLs
itself right after its part file holds n new items (a kill at an exact point, no timing).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PARTS_DIR = "parts"
KILL_AFTER_ENV = "MATHJAX_VL_DEBUG_KILL_AFTER_ITEMS"


@dataclasses.dataclass(frozen=True)
class Processes:
    """This process's place among the processes sharing a run, and a barrier across them."""

    index: int = 0
    count: int = 1
    barrier: Callable[[str], None] = lambda name: None

    @classmethod
    def from_jax(cls) -> Processes:
        """jax.process_index / process_count; a no-op barrier for a single process."""
        import jax

        if jax.process_count() == 1:
            return cls()
        from jax.experimental import multihost_utils

        return cls(jax.process_index(), jax.process_count(), multihost_utils.sync_global_devices)


def share(indices: Sequence[int], processes: Processes) -> list[int]:
    """This process's deterministic share of `indices` (strided: indices[p::count])."""
    return list(indices)[processes.index :: processes.count]


def part_path(out_dir: str | Path, name: str, processes: Processes) -> Path:
    return (
        Path(out_dir) / PARTS_DIR / f"{name}.{processes.index:05d}-of-{processes.count:05d}.jsonl"
    )


def read_parts(out_dir: str | Path, name: str, keys: Sequence[str]) -> dict[int, dict[str, Any]]:
    """{index: row} of every finished item in every `name` part file (first row wins).

    A torn last line (no newline: the writer was killed mid-line) is ignored; any other line
    that is not a JSON row of a known index with its item's key raises, naming file and line."""
    done: dict[int, dict[str, Any]] = {}
    folder = Path(out_dir) / PARTS_DIR
    if not folder.is_dir():
        return done
    for path in sorted(folder.glob(f"{name}.*-of-*.jsonl")):
        data = path.read_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1]:  # no trailing newline: torn by a kill
            log.warning("%s: ignoring a torn last line (%d bytes)", path, len(lines[-1]))
        for line_no, raw in enumerate(lines[:-1], start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
                index, key = int(row["index"]), str(row["key"])
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{line_no}: not a result row ({err})") from None
            if not 0 <= index < len(keys) or keys[index] != key:
                expected = keys[index] if 0 <= index < len(keys) else f"an index < {len(keys)}"
                raise ValueError(
                    f"{path}:{line_no}: item {index} is {key!r} but this run's item {index} is "
                    f"{expected!r}; these parts belong to another item list (use a new --out)"
                )
            done.setdefault(index, row)
    return done


def check_settings(out_dir: str | Path, name: str, settings: dict[str, Any], write: bool) -> None:
    """Raises when `parts/<name>.settings.json` holds other settings; writes it if absent."""
    path = Path(out_dir) / PARTS_DIR / f"{name}.settings.json"
    wanted = json.loads(json.dumps(settings, sort_keys=True, default=str))
    if path.exists():
        found = json.loads(path.read_text())
        if found != wanted:
            diff = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
            raise ValueError(
                f"{path}: the results in {path.parent} were made with other settings "
                f"({', '.join(f'{k}: {found.get(k)!r} != {wanted.get(k)!r}' for k in diff[:3])}); "
                "use a new --out, or delete that folder to start again"
            )
    elif write:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(wanted, indent=1, sort_keys=True))
        tmp.replace(path)


class PartWriter:
    """Appends finished items' rows to this process's part file, one write per line."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():  # cut a torn last line so the next row starts on its own line
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                with open(path, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.written = 0
        kill = os.environ.get(KILL_AFTER_ENV)
        self._kill_after = int(kill) if kill else None

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            os.write(self._fd, (json.dumps(row, sort_keys=True) + "\n").encode())
        os.fsync(self._fd)
        self.written += len(rows)
        if self._kill_after is not None and self.written >= self._kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        os.close(self._fd)


Work = Callable[[list[int], Callable[[Sequence[dict[str, Any]]], None]], None]


def run_items(
    keys: Sequence[str],
    out_dir: str | Path,
    name: str,
    work: Work,
    processes: Processes = Processes(),
    settings: dict[str, Any] | None = None,
) -> list[dict[str, Any]] | None:
    """Runs `work` over the items not done yet (this process's share); returns every item's row
    in item order on process 0, None on the others (see the module docstring).

    `work(indices, append)` must call append with rows {"index": i, "key": keys[i], ...}.
    `settings` (JSON-able: the model and generation knobs) is stored in
    `parts/<name>.settings.json` by the first run; a rerun with other settings is an error, so
    parts of another model are never reused."""
    check_settings(out_dir, name, settings or {}, write=processes.index == 0)
    done = read_parts(out_dir, name, keys)
    processes.barrier(f"{name}_read")
    if processes.index != 0:
        check_settings(out_dir, name, settings or {}, write=False)
    remaining = [i for i in range(len(keys)) if i not in done]
    mine = share(remaining, processes)
    log.info(
        "%s: %d of %d items done before; process %d of %d generates %d",
        name,
        len(done),
        len(keys),
        processes.index,
        processes.count,
        len(mine),
    )
    writer = PartWriter(part_path(out_dir, name, processes))
    try:
        if mine:
            work(mine, writer.append)
    finally:
        writer.close()
    processes.barrier(f"{name}_written")
    if processes.index != 0:
        return None
    rows = read_parts(out_dir, name, keys)
    missing = [i for i in range(len(keys)) if i not in rows]
    if missing:
        raise RuntimeError(
            f"{Path(out_dir) / PARTS_DIR}: {len(missing)} item(s) have no result after every "
            f"process finished (first: item {missing[0]}, {keys[missing[0]]!r})"
        )
    return [rows[i] for i in range(len(keys))]
