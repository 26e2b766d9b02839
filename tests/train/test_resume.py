"""Exact resume: 2N steps straight == N steps, SIGKILL (or SIGTERM mid-interval), resume to 2N.

Training runs in subprocesses (`mathjax-vl train`) so the kill is real; they share a persistent
compilation cache so only the first one compiles. No timing: the trainer pauses after step N + 1
(`debug.pause_after_step`, writing a marker) and the signal is sent while it waits there, so it
lands at that exact step however loaded the machine is. Repeat check (20 runs, a CPU hog beside):

    sh -c 'while :; do :; done' & hog=$!; for i in $(seq 20); do \
      python -m pytest -q -p no:xdist tests/train/test_resume.py || break; done; kill $hog
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mathjax_vl.train import debug_hooks

ROOT = Path(__file__).parents[2]
CONFIG = str(ROOT / "configs" / "tiny_text_sft.py")
N = 4


def _env(cache_dir: Path) -> dict:
    env = dict(os.environ)
    env.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=1",
        JAX_COMPILATION_CACHE_DIR=str(cache_dir),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


def _cmd(workdir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "mathjax_vl.cli.main", "train", "--config", CONFIG,
        "--workdir", str(workdir), "--log-level", "WARNING",
        f"--config.train.num_steps={2 * N}", f"--config.checkpoint.interval={N}",
        "--config.mesh.num_devices=1", *extra,
    ]  # fmt: skip


def _run(workdir, cache, *extra):
    proc = subprocess.run(
        _cmd(workdir, *extra), env=_env(cache), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _fingerprints(workdir: Path) -> dict[int, list[str]]:
    """step -> fingerprints of every time that step ran (a replayed step appears twice)."""
    out: dict[int, list[str]] = {}
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "batch_fingerprint" in row:
            out.setdefault(row["step"], []).append(row["batch_fingerprint"])
    return out


def _params(workdir: Path, step: int) -> dict:
    """The saved train state as host numpy arrays (works for any saving topology)."""
    import jax
    import orbax.checkpoint as ocp

    path = workdir / "checkpoints" / str(step) / "state"
    ckptr = ocp.PyTreeCheckpointer()
    meta = ckptr.metadata(path)
    tree = meta.tree if hasattr(meta, "tree") else meta.item_metadata.tree
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return ckptr.restore(path, args=ocp.args.PyTreeRestore(restore_args=args))


def _assert_bitwise_equal(a, b):
    import jax

    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) and la
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _start(workdir: Path, cache: Path, log: Path, *extra: str) -> subprocess.Popen:
    """A trainer in the background, its output in a file (a full pipe nobody reads would stall
    it)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            _cmd(workdir, *extra), env=_env(cache), stdout=out, stderr=subprocess.STDOUT, text=True
        )


def _wait_for(predicate, proc, log: Path, timeout=600):
    """Poll until `predicate()`; the trainer is paused at a fixed step, so no deadline is tight."""
    start = time.time()
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early: {log.read_text()[-3000:]}")
        if time.time() - start > timeout:
            proc.kill()
            raise AssertionError("timed out waiting for the trainer")
        time.sleep(0.05)


def _last_step(workdir: Path) -> int:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return 0
    steps = [json.loads(x).get("step", 0) for x in path.read_text().splitlines() if x.strip()]
    return max(steps, default=0)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    cache = tmp_path_factory.mktemp("jax_cache")
    workdir = tmp_path_factory.mktemp("straight")
    _run(workdir, cache)
    return workdir, cache


def test_sigkill_after_checkpoint_resumes_exactly(straight, tmp_path):
    ref_dir, cache = straight
    workdir = tmp_path / "killed"
    log = tmp_path / "killed.log"
    proc = _start(workdir, cache, log, f"--config.debug.pause_after_step={N + 1}")
    complete = workdir / "checkpoints" / str(N) / "COMPLETE.json"
    marker = debug_hooks.pause_marker(workdir, N + 1)
    _wait_for(lambda: complete.exists() and marker.exists(), proc, log)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert _last_step(workdir) == N + 1  # killed exactly after step N + 1
    assert not (workdir / "checkpoints" / str(N + 1)).exists()
    _run(workdir, cache)
    _assert_bitwise_equal(_params(workdir, 2 * N), _params(ref_dir, 2 * N))
    # the run dir carries its resolved config (file + command-line overrides)
    from mathjax_vl.train.config_loader import load_config

    saved = load_config(str(workdir / "config.py"))
    overrides = [f"train.num_steps={2 * N}", f"checkpoint.interval={N}", "mesh.num_devices=1"]
    assert saved.to_dict() == load_config(CONFIG, overrides).to_dict()
    assert saved.train.num_steps == 2 * N and saved.checkpoint.interval == N
    got, want = _fingerprints(workdir), _fingerprints(ref_dir)
    assert sorted(got) == list(range(1, 2 * N + 1))
    for step, seen in got.items():
        assert set(seen) == set(want[step]), f"step {step}: batches {seen} vs {want[step]}"
    assert any(len(v) > 1 for v in got.values())  # some steps were replayed after the kill


def test_sigterm_mid_interval_saves_exits_zero_and_resumes(straight, tmp_path):
    ref_dir, cache = straight
    workdir = tmp_path / "termed"
    log = tmp_path / "termed.log"
    proc = _start(workdir, cache, log, f"--config.debug.pause_after_step={N + 1}")
    _wait_for(debug_hooks.pause_marker(workdir, N + 1).exists, proc, log)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=600)
    out = log.read_text()
    assert proc.returncode == 0, out[-3000:]
    assert "preempted" in out
    stopped = _last_step(workdir)
    assert stopped == N + 1  # saved at exactly the step it was paused at
    assert (workdir / "checkpoints" / str(stopped) / "COMPLETE.json").exists()
    _run(workdir, cache)
    _assert_bitwise_equal(_params(workdir, 2 * N), _params(ref_dir, 2 * N))
    got, want = _fingerprints(workdir), _fingerprints(ref_dir)
    assert {s: v for s, v in got.items()} == want  # nothing replayed: saved at the exact step
