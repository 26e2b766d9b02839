"""Non-finite guard and recovery from a truncated checkpoint (in-process trainer runs)."""

import json
import os
from pathlib import Path

import grain
import jax
import numpy as np
import pytest

from mathjax_vl.train import guards
from mathjax_vl.train.config_loader import load_config
from mathjax_vl.train.trainer import Trainer

CONFIGS = Path(__file__).parents[2] / "configs"
BATCH = 4


def _nan_example_for_step(config, step: int) -> int:
    """The dataset index that the synthetic pipeline puts first in batch `step` (1-based)."""
    seed = int(config.data.seed)
    ds = grain.MapDataset.range(int(config.data.num_examples)).shuffle(seed=seed).repeat(None)
    return int(ds[(step - 1) * BATCH])


def _config(name, *overrides):
    return load_config(
        str(CONFIGS / name),
        [
            "--config.mesh.num_devices=1",
            f"--config.train.global_batch_size={BATCH}",
            "--config.checkpoint.interval=2",
            "--config.checkpoint.async_save=False",
            *overrides,
        ],
    )


def test_nan_in_batch_stops_run_naming_step_and_keeps_last_good_checkpoint(tmp_path):
    config = _config("tiny_contrastive.py", "--config.train.num_steps=6")
    config.data.nan_example_index = _nan_example_for_step(config, 4)
    with pytest.raises(guards.NonFiniteError, match=r"non-finite value at step 4\b") as err:
        Trainer(config, tmp_path).run()
    assert "checkpoints/2" in str(err.value)  # names the last good checkpoint
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [2]  # the bad state was not saved; the good one is kept
    assert (tmp_path / "checkpoints" / "2" / "COMPLETE.json").exists()


def _saved_state(workdir: Path, step: int) -> dict:
    """A saved train state as host numpy arrays (orbax metadata -> numpy restore)."""
    import orbax.checkpoint as ocp

    path = workdir / "checkpoints" / str(step) / "state"
    ckptr = ocp.PyTreeCheckpointer()
    meta = ckptr.metadata(path)
    tree = meta.tree if hasattr(meta, "tree") else meta.item_metadata.tree
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return ckptr.restore(path, args=ocp.args.PyTreeRestore(restore_args=args))


def test_nan_skip_policy_leaves_state_unchanged(tmp_path):
    """guard.policy=skip: the NaN batch of step 3 changes neither the parameters nor the Adam
    state (checkpoints 2 and 3 hold the same values), the run goes on (step 4 moves them) and
    the metrics mark step 3 skipped."""
    config = _config(
        "tiny_contrastive.py",
        "--config.train.num_steps=4",
        "--config.guard.policy=skip",
        "--config.checkpoint.interval=1",
        "--config.checkpoint.keep=5",
    )
    config.data.nan_example_index = _nan_example_for_step(config, 3)
    summary = Trainer(config, tmp_path).run()
    assert summary["status"] == "completed" and summary["skipped_steps"] == 1
    s2, s3, s4 = (_saved_state(tmp_path, k) for k in (2, 3, 4))
    for key in ("trainable", "opt_state"):
        a, b = jax.tree.leaves(s2[key]), jax.tree.leaves(s3[key])
        assert a and len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    moved = [
        not np.array_equal(x, y)
        for x, y in zip(jax.tree.leaves(s3["trainable"]), jax.tree.leaves(s4["trainable"]))
    ]
    assert any(moved)  # the good step after the skipped one updates again
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    skipped = [r for r in rows if r.get("skipped") is True]
    assert [r["step"] for r in skipped] == [3]
    assert [r["skipped_step"] for r in rows if "skipped_step" in r] == [3]


@pytest.mark.slow
def test_truncated_latest_checkpoint_is_skipped_with_warning(tmp_path):
    config = _config("tiny_text_sft.py", "--config.train.num_steps=4")
    first = Trainer(config, tmp_path).run()
    want = jax.device_get(first["state"].params())
    ckpt4 = tmp_path / "checkpoints" / "4"
    files = [p for p in ckpt4.rglob("*") if p.is_file() and "state" in p.parts]
    biggest = max(files, key=lambda p: p.stat().st_size)
    with open(biggest, "r+b") as f:
        f.truncate(biggest.stat().st_size // 2)
    with pytest.warns(RuntimeWarning, match=f"skipping checkpoint {ckpt4}"):
        second = Trainer(config, tmp_path).run()
    assert second["status"] == "completed"
    got = jax.device_get(second["state"].params())
    jax.tree.map(np.testing.assert_array_equal, got, want)  # steps 3-4 replayed from step 2
    assert os.path.exists(ckpt4 / "COMPLETE.json")  # saved again, complete this time
    assert list((tmp_path / "checkpoints").glob("incomplete_4_*"))  # the bad one, set aside
