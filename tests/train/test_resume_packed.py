"""Exact resume with multimodal packing on: SIGKILL after a checkpoint, resume, and the params
are bitwise those of an uninterrupted run over an identical batch sequence (the packer's window
state is in the Grain iterator state the checkpoint stores). Real records through the real
pipeline, in `mathjax-vl train` subprocesses (the machinery of test_resume.py). Three tiny-VLM
trainer runs (~3 min idle, ~7 min on a loaded 2-core box), so it is a slow test:

    python -m pytest -q -p no:xdist -m slow tests/train/test_resume_packed.py
"""

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mathjax_vl.data import records as R
from mathjax_vl.data.storage import write_dataset
from mathjax_vl.data.tokenizer_train import train_tokenizer

_spec = importlib.util.spec_from_file_location(
    "_resume_machinery", Path(__file__).with_name("test_resume.py")
)
base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(base)

ROOT = Path(__file__).parents[2]
N = 3


@pytest.fixture(scope="module")
def packed_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("packed_resume")
    rng = np.random.default_rng(0)
    recs, texts = [], []
    for i in range(24):
        k = i % 3
        question = "<image>" * k + f"\nWhat is {i} plus {i + 1}?" + " Think." * (i % 4)
        answer = f"The answer is {2 * i + 1}." * (1 + i % 2)
        texts += [question, answer]
        images = tuple(
            R.encode_png(Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)))
            for _ in range(k)
        )
        recs.append(
            R.MultimodalConversation(
                (R.Turn("user", question), R.Turn("assistant", answer)), images=images
            )
        )
    data = write_dataset(recs, root / "data", "mm")
    tok = train_tokenizer(texts * 4, 400, root / "tok")
    config = root / "packed_sft.py"
    tiny = str(ROOT / "configs" / "tiny_multimodal_sft.py")
    config.write_text(
        f"""
import importlib.util
_s = importlib.util.spec_from_file_location("tiny", {tiny!r})
_m = importlib.util.module_from_spec(_s)
_s.loader.exec_module(_m)


def get_config(arg=""):
    c = _m.get_config()
    c.data.kind = "pipeline"
    c.data.dataset = {str(data)!r}
    c.data.tokenizer_dir = {str(tok)!r}
    c.data.objective = "multimodal_sft"
    c.data.layout = "packing"
    c.data.packing_window = 8
    c.data.seq_len = 128
    c.data.max_images = 3
    c.model.image_token_id = 3
    c.model.decoder.vocab_size = 512
    c.train.global_batch_size = 2
    return c
"""
    )
    return str(config)


def _cmd(config, workdir, *extra):
    return [
        sys.executable, "-m", "mathjax_vl.cli.main", "train", "--config", config,
        "--workdir", str(workdir), "--log-level", "WARNING",
        f"--config.train.num_steps={2 * N}", f"--config.checkpoint.interval={N}",
        "--config.mesh.num_devices=1", *extra,
    ]  # fmt: skip


def _run(config, workdir, cache):
    proc = subprocess.run(
        _cmd(config, workdir), env=base._env(cache), capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_sigkill_with_packing_resumes_exactly(packed_config, tmp_path):
    cache = tmp_path / "jax_cache"
    ref_dir = tmp_path / "straight"
    out = _run(packed_config, ref_dir, cache).stdout
    assert "useful tokens:" in out
    rows = [json.loads(x) for x in (ref_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "batch_fingerprint" in r]
    # packed rows: far more useful tokens per computed token than one example per 128-token row
    assert all(0.5 < r["useful_fraction"] <= 1.0 for r in steps)
    assert all(r["computed_tokens"] == 2 * 128 for r in steps)

    workdir = tmp_path / "killed"
    log = tmp_path / "killed.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            _cmd(packed_config, workdir, "--config.debug.step_sleep_s=0.5"),
            env=base._env(cache), stdout=sink, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    complete = workdir / "checkpoints" / str(N) / "COMPLETE.json"
    start = __import__("time").time()
    while not (complete.exists() and base._last_step(workdir) >= N + 1):
        assert proc.poll() is None, log.read_text()[-3000:]
        assert __import__("time").time() - start < 900, "timed out waiting for the trainer"
        __import__("time").sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert base._last_step(workdir) < 2 * N
    _run(packed_config, workdir, cache)
    base._assert_bitwise_equal(base._params(workdir, 2 * N), base._params(ref_dir, 2 * N))
    got, want = base._fingerprints(workdir), base._fingerprints(ref_dir)
    assert sorted(got) == list(range(1, 2 * N + 1))
    for step, seen in got.items():
        assert set(seen) == set(want[step]), f"step {step}: batches {seen} vs {want[step]}"
    assert any(len(v) > 1 for v in got.values())  # some steps were replayed after the kill
