"""The trainer never destroys or mixes runs: a changed-structure resume is refused and leaves the
run byte-for-byte as it was; a second trainer on the same run dir is refused naming the holder;
a checkpoint corrupted in place (same size) is caught by its SHA-256 and the previous one used."""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mathjax_vl.cli.main import main
from mathjax_vl.train import checkpointing
from mathjax_vl.train.config_loader import load_config
from mathjax_vl.train.run_guard import RunMismatchError
from mathjax_vl.train.trainer import Trainer
from mathjax_vl.train.workdir_lock import WorkdirLock, WorkdirLockedError

ROOT = Path(__file__).parents[2]
CONFIG = str(ROOT / "configs" / "tiny_text_sft.py")
OVERRIDES = [
    "--config.train.num_steps=4",
    "--config.checkpoint.interval=2",
    "--config.mesh.num_devices=1",
    "--config.metrics.tensorboard=False",
]


def _config(*extra):
    return load_config(CONFIG, [*OVERRIDES, *extra])


def _snapshot(workdir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(workdir)): p.read_bytes()
        for p in sorted(workdir.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 4-step run (checkpoints 2 and 4) and its final params."""
    workdir = tmp_path_factory.mktemp("run") / "w"
    summary = Trainer(_config(), workdir).run()
    assert summary["status"] == "completed" and summary["step"] == 4
    return workdir, jax.device_get(summary["state"].params())


def _copy(finished_run, tmp_path) -> Path:
    workdir = tmp_path / "w"
    shutil.copytree(finished_run[0], workdir)
    return workdir


def test_changed_model_resume_is_refused_and_leaves_the_run_untouched(
    finished_run, tmp_path, capsys
):
    workdir = _copy(finished_run, tmp_path)
    before = _snapshot(workdir)
    assert {"config.json", "metrics.jsonl", "checkpoints/4/COMPLETE.json"} <= set(before)
    argv = ["train", "--config", CONFIG, "--workdir", str(workdir), *OVERRIDES]
    rc = main([*argv, "--config.model.decoder.hidden_size=64", "--config.optim.frozen=['norm']"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert "model.decoder.hidden_size: run has 32, config has 64" in err
    assert "optim.frozen: run has [], config has ['norm']" in err
    assert _snapshot(workdir) == before  # checkpoints, config.json, metrics: all as they were
    # Without the saved config the checkpoint's own structure refuses it, naming the arrays.
    (workdir / "config.json").unlink()
    before = _snapshot(workdir)
    rc = main([*argv, "--config.model.decoder.hidden_size=64"])
    err = capsys.readouterr().err
    assert rc == 2 and f"checkpoint {workdir}/checkpoints/4 holds a train state" in err
    assert (
        "embed_tokens/embedding: checkpoint has float32[256, 32], config has float32[256, 64]"
        in err
    )
    assert _snapshot(workdir) == before
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4"]


def test_resume_without_the_saved_config_still_refuses_in_process(finished_run, tmp_path):
    workdir = _copy(finished_run, tmp_path)
    (workdir / "config.json").unlink()
    with pytest.raises(RunMismatchError, match="opt_state/.*mu/embed_tokens/embedding"):
        Trainer(_config("--config.model.decoder.hidden_size=48"), workdir).run()


def test_second_trainer_is_refused_naming_host_and_pid(tmp_path, capsys):
    workdir = tmp_path / "w"
    # another process holds the run dir (as a running trainer does) ...
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time; from mathjax_vl.train.workdir_lock import WorkdirLock; "
            f"WorkdirLock({str(workdir)!r}).acquire(); print('locked', flush=True); time.sleep(600)"
        )],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc = main(["train", "--config", CONFIG, "--workdir", str(workdir), *OVERRIDES])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1
        assert f"host {socket.gethostname()}, pid {holder.pid}" in err
        assert sorted(p.name for p in workdir.iterdir()) == [".lock"]  # nothing else written
    finally:
        holder.send_signal(signal.SIGKILL)  # ... and dies without cleaning up
        holder.wait(timeout=30)
    # the kernel released its flock: the run dir is free again
    with WorkdirLock(workdir):
        pass
    # a trainer in this very process is refused too (the lock is per open file, not per pid)
    with WorkdirLock(workdir), pytest.raises(WorkdirLockedError, match=f"pid {os.getpid()}"):
        Trainer(_config(), workdir).run()


def test_same_size_corruption_is_detected_and_previous_checkpoint_used(finished_run, tmp_path):
    workdir = _copy(finished_run, tmp_path)
    ckpt4 = workdir / "checkpoints" / "4"
    files = [p for p in ckpt4.rglob("*") if p.is_file() and "state" in p.parts]
    victim = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))  # same size: the old size-only manifest passed this
    pattern = f"skipping checkpoint {ckpt4}: file {victim} has SHA-256"
    with pytest.warns(RuntimeWarning, match=pattern):
        summary = Trainer(_config(), workdir).run()
    assert summary["status"] == "completed" and summary["step"] == 4
    got = jax.device_get(summary["state"].params())
    jax.tree.map(np.testing.assert_array_equal, got, finished_run[1])  # replayed 3-4 from 2
    events = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    resumed = [e for e in events if "resumed_from" in e]
    assert len(resumed) == 1 and resumed[0]["resumed_from"] == 2
    assert resumed[0]["checkpoint"] == str(workdir / "checkpoints" / "2")
    assert list((workdir / "checkpoints").glob("incomplete_4_*"))  # set aside, not deleted
    ckpt = checkpointing.Checkpointer(workdir / "checkpoints", 0, 0, False)
    assert ckpt.incomplete_reason(4) is None  # saved again, complete
    ckpt.manager.close()


def _tiny_state(value: float):
    return SimpleNamespace(
        step=jnp.int32(3),
        trainable={"w": jnp.full((64, 64), value, jnp.float32)},
        frozen={"b": jnp.arange(5, dtype=jnp.float32)},
        opt_state={"m": jnp.zeros((64, 64), jnp.float32)},
    )


def _abstract(state):
    parts = checkpointing.state_dict(state)
    return SimpleNamespace(**jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), parts))


def _shardings(state):
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return SimpleNamespace(**jax.tree.map(lambda _: device, checkpointing.state_dict(state)))


def test_manifest_sha256_is_computed_off_the_training_thread(tmp_path, monkeypatch):
    seen = []
    real = checkpointing.file_sha256

    def recording(path):
        seen.append(threading.current_thread().name)
        time.sleep(0.01)
        return real(path)

    monkeypatch.setattr(checkpointing, "file_sha256", recording)
    ckpt = checkpointing.Checkpointer(tmp_path, interval=1, keep=0, async_save=True)
    ckpt.save(1, _tiny_state(1.0), {"pos": 1}, {"step": 1})
    manifest = tmp_path / "1" / checkpointing.MANIFEST
    deadline = time.time() + 60
    while not manifest.exists():  # the training loop polls; it never blocks on the hashes
        ckpt.poll()
        assert time.time() < deadline
        time.sleep(0.01)
    ckpt.close()
    assert seen and all(name == "manifest_1" for name in seen)
    listed = json.loads(manifest.read_text())
    assert set(listed["sha256"]) == set(listed["files"]) and len(listed["files"]) >= 5
    for rel, digest in listed["sha256"].items():  # an independent hash of every file
        assert hashlib.sha256((tmp_path / "1" / rel).read_bytes()).hexdigest() == digest
    # a manifest from before checksums (sizes only) is still accepted
    listed.pop("sha256")
    manifest.write_text(json.dumps(listed))
    assert checkpointing.Checkpointer(tmp_path, 0, 0, False).incomplete_reason(1) is None


def test_complete_checkpoint_that_fails_to_restore_is_fatal_and_kept(tmp_path):
    ckpt = checkpointing.Checkpointer(tmp_path, interval=1, keep=0, async_save=False)
    state = _tiny_state(2.0)
    ckpt.save(1, state, {"pos": 1}, {"step": 1})
    ckpt.close()
    before = _snapshot(tmp_path)
    wrong = _abstract(state)
    wrong.trainable = {"w": jax.ShapeDtypeStruct((32, 64), jnp.float32)}
    ckpt = checkpointing.Checkpointer(tmp_path, interval=1, keep=0, async_save=False)
    with pytest.raises(checkpointing.CheckpointRestoreError, match=f"checkpoint {tmp_path}/1 is"):
        ckpt.restore_latest(wrong, _shardings(state))
    ckpt.manager.close()
    assert _snapshot(tmp_path) == before  # not renamed, not skipped, not overwritten
    # the right structure restores the same checkpoint
    ckpt = checkpointing.Checkpointer(tmp_path, interval=1, keep=0, async_save=False)
    step, restored, data, meta = ckpt.restore_latest(_abstract(state), _shardings(state))
    ckpt.manager.close()
    assert (step, data, meta) == (1, {"pos": 1}, {"step": 1})
    np.testing.assert_array_equal(restored["trainable"]["w"], np.full((64, 64), 2.0))
