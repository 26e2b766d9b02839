"""Resumable and multi-process evaluation (mathjax_vl.eval.shards): the share / merge logic on
fake processes (threads), a SIGKILL mid-evaluation then a rerun that generates only the remaining
items with an identical report, and two processes joined by jax.distributed on loopback giving
one process's summary.json and items.jsonl."""

import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading

import pytest

from mathjax_vl.cli.main import main
from mathjax_vl.data.records import EvalProblem
from mathjax_vl.data.storage import write_dataset
from mathjax_vl.eval import shards
from mathjax_vl.eval.generation import GenerationEngine

ROOT = pathlib.Path(__file__).parents[2]


def _load_assets():
    if "_tiny_assets" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "_tiny_assets", pathlib.Path(__file__).with_name("_tiny_assets.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["_tiny_assets"] = module
        spec.loader.exec_module(module)
    return sys.modules["_tiny_assets"]


assets = _load_assets()


# ------------------------------------------------------------------ share / merge (fast, no jax)
def _fake_work(calls):
    def work(indices, append):
        calls.extend(indices)
        for start in range(0, len(indices), 2):  # "batches" of 2
            append(
                [{"index": i, "key": f"k{i}", "value": i * i} for i in indices[start : start + 2]]
            )

    return work


def _threads(keys, out, count, calls):
    """`count` fake processes (threads with a real barrier) over the same run."""
    barrier = threading.Barrier(count)
    results, errors = {}, []

    def one(index):
        try:
            procs = shards.Processes(index, count, lambda name: barrier.wait())
            results[index] = shards.run_items(keys, out, "r", _fake_work(calls), procs)
        except Exception as err:  # surfaced below
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_shares_partition_the_items_and_merge_in_order(tmp_path):
    keys = [f"k{i}" for i in range(11)]
    assert shards.share(range(11), shards.Processes(1, 3)) == [1, 4, 7, 10]
    calls = []
    results = _threads(keys, tmp_path / "three", 3, calls)
    assert sorted(calls) == list(range(11))  # every item generated exactly once
    assert results[1] is None and results[2] is None
    assert [r["value"] for r in results[0]] == [i * i for i in range(11)]
    parts = sorted(p.name for p in (tmp_path / "three" / "parts").glob("r.*.jsonl"))
    assert parts == [f"r.0000{i}-of-00003.jsonl" for i in range(3)]
    one = shards.run_items(keys, tmp_path / "one", "r", _fake_work([]))
    assert one == results[0]


def test_rerun_skips_done_items_and_ignores_a_torn_line(tmp_path):
    keys = [f"k{i}" for i in range(7)]
    part = tmp_path / "parts" / "r.00000-of-00002.jsonl"
    part.parent.mkdir(parents=True)
    rows = [{"index": i, "key": f"k{i}", "value": i * i} for i in (0, 2, 5)]
    torn = json.dumps({"index": 6, "key": "k6", "value": 36})[:-5]
    part.write_text("".join(json.dumps(r) + "\n" for r in rows) + torn)
    assert sorted(shards.read_parts(tmp_path, "r", keys)) == [0, 2, 5]
    calls = []
    merged = _threads(keys, tmp_path, 2, calls)[0]
    assert sorted(calls) == [1, 3, 4, 6]  # only the remaining items, shared by the 2 processes
    assert [r["value"] for r in merged] == [i * i for i in range(7)]
    # the torn line was cut before appending: every line of that file parses
    for line in part.read_text().splitlines():
        json.loads(line)


def test_parts_of_another_item_list_or_settings_are_refused(tmp_path):
    shards.run_items(["a", "b"], tmp_path, "r", lambda idx, append: append(
        [{"index": i, "key": "ab"[i]} for i in idx]), settings={"model": "m1"})  # fmt: skip
    with pytest.raises(ValueError, match=r"r\.00000-of-00001\.jsonl:1: item 0 is 'a' but .* 'x'"):
        shards.run_items(["x", "b"], tmp_path, "r", _fake_work([]), settings={"model": "m1"})
    with pytest.raises(ValueError, match="other settings .*model: 'm1' != 'm2'"):
        shards.run_items(["a", "b"], tmp_path, "r", _fake_work([]), settings={"model": "m2"})


# --------------------------------------------------------------- the eval CLI, killed and resumed
N_PROBLEMS, KILL_AFTER, BATCH = 6, 2, 2


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    problems = [
        EvalProblem(
            problem_id=f"q{i}",
            version="vision_only" if i % 2 else "text_only",
            question=("<image> " if i % 2 else "") + "Find the angle x. " * (1 + i % 3),
            answer="12",
            answer_type="integer",
            images=(assets.random_png(i),) if i % 2 else (),
        )
        for i in range(N_PROBLEMS)
    ]
    root = tmp_path_factory.mktemp("resume")
    return write_dataset(problems, root / "data", "resume_eval", split="test")


def _args(data, out):
    llava_dir, _ = assets.shared_llava()
    return ["eval", "--benchmark", "generic", "--data", data, "--model", llava_dir,
            "--out", str(out), "--max-new-tokens", "6", "--batch-size", str(BATCH),
            "--no-progress"]  # fmt: skip


def _env(**extra):
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), **extra)
    return env


def _report(out):
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("files")  # absolute paths of the report files under `out`
    return summary, (out / "items.jsonl").read_text()


@pytest.fixture(scope="module")
def straight(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "report"
    assert main(_args(dataset, out)) == 0
    return _report(out)


def _count_generated(monkeypatch):
    counted = []
    original = GenerationEngine.generate

    def counting(self, requests, *a, **k):
        counted.append(len(requests))
        return original(self, requests, *a, **k)

    monkeypatch.setattr(GenerationEngine, "generate", counting)
    return counted


@pytest.mark.slow  # ~30 s (a subprocess + 3 runs); run with -m slow
def test_sigkill_mid_eval_then_rerun_generates_only_the_rest(dataset, straight, tmp_path,
                                                             monkeypatch):  # fmt: skip
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "mathjax_vl.cli.main", *_args(dataset, out)]
    env = _env(**{shards.KILL_AFTER_ENV: str(KILL_AFTER)})
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]  # SIGKILLed after its first batch
    assert not (out / "summary.json").exists()
    assert len(shards.read_parts(out, "responses", _keys(dataset))) == KILL_AFTER
    counted = _count_generated(monkeypatch)
    assert main(_args(dataset, out)) == 0
    assert sum(counted) == N_PROBLEMS - KILL_AFTER
    assert _report(out) == straight
    counted.clear()  # a third run has nothing left to generate and reports the same
    assert main(_args(dataset, out)) == 0
    assert sum(counted) == 0 and _report(out) == straight


def _keys(data):
    from mathjax_vl.eval.evaluator import load_problems, problem_key

    return [problem_key(p) for p in load_problems("generic", data, images=False)]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two processes, ~35 s; run with -m slow
def test_two_processes_on_loopback_equal_one(dataset, straight, tmp_path):
    out = tmp_path / "report"
    port = _free_port()
    procs = []
    for pid in range(2):
        env = _env(
            XLA_FLAGS="--xla_force_host_platform_device_count=1",
            MATHJAX_VL_COORDINATOR=f"127.0.0.1:{port}",
            MATHJAX_VL_NUM_PROCESSES="2",
            MATHJAX_VL_PROCESS_ID=str(pid),
        )
        cmd = [sys.executable, "-m", "mathjax_vl.cli.main", *_args(dataset, out)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    parts = sorted(p.name for p in (out / "parts").glob("responses.*.jsonl"))
    assert parts == ["responses.00000-of-00002.jsonl", "responses.00001-of-00002.jsonl"]
    sizes = [len((out / "parts" / name).read_text().splitlines()) for name in parts]
    assert sizes == [N_PROBLEMS // 2, N_PROBLEMS // 2]  # each process answered its share
    assert _report(out) == straight
