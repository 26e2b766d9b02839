"""Beam path (DirectRunner): the local engine's dataset, failures counted, global dedup."""

import contextlib
import itertools
import json
import os
import random

import pytest

from mathjax_vl.data import records as R
from mathjax_vl.data.storage import RecordSource
from mathjax_vl.datagen import beam as B
from mathjax_vl.datagen import engine as E
from mathjax_vl.datagen import quality as Q
from mathjax_vl.datagen.sandbox import FigureExecutor, SandboxConfig

HERE = os.path.dirname(os.path.abspath(__file__))
EVAL = dict(recipe="mathverse_eval", n=2, seed=4, workers=2, progress=False)
CODE = dict(recipe="image_code", n=4, seed=21, workers=2, progress=False)


@pytest.fixture(scope="module")
def executor():
    with FigureExecutor(SandboxConfig(workers=2)) as ex:
        yield ex


@pytest.fixture(scope="module")
def beam_cli_run(tmp_path_factory):
    """`mathjax-vl datagen --runner beam` on DirectRunner: (dataset dir, report, exit code)."""
    from mathjax_vl.cli.main import main

    out = tmp_path_factory.mktemp("beam_cli")
    argv = ["datagen", "--recipe", EVAL["recipe"], "--n", str(EVAL["n"])]
    argv += ["--seed", str(EVAL["seed"]), "--workers", "2", "--out", str(out), "--no-progress"]
    argv += ["--runner", "beam", "--beam-runner", "DirectRunner"]
    argv += ["--beam-options", "--direct_num_workers=1 --direct_running_mode=in_memory"]
    argv += ["--beam-item-factor", "1.0", "--beam-item-slack", "2", "--beam-items-per-task", "2"]
    code = main(argv)
    dataset_dir = os.path.join(out, EVAL["recipe"], "1.0.0")
    with open(os.path.join(dataset_dir, B.REPORT_FILE)) as f:
        return dataset_dir, json.load(f), code


def test_beam_pipeline_writes_the_local_engines_dataset(beam_cli_run, executor):
    dataset_dir, report, code = beam_cli_run
    assert code == 0
    local = E.generate(E.DatagenConfig(**EVAL), executor)
    source = RecordSource(dataset_dir, split="test")
    beam_records = [source[i] for i in range(len(source))]
    # Same items in the same order: spec hashes, answers, questions and image bytes.
    assert len(beam_records) == len(local.records) == 12  # 2 problems x (Text Only + 5)
    assert [r.to_dict() for r in beam_records] == [r.to_dict() for r in local.records]
    fingerprints = {r.metadata["fingerprint"] for r in beam_records}
    assert len(fingerprints) == 2
    assert all(Q.split_of(fp) == "test" for fp in fingerprints)  # eval content never in train
    assert all(r.images[0].startswith(b"\x89PNG") for r in beam_records[1:6])
    # The report carries the local engine's statistics for the accepted items.
    assert report["accepted_items"] == local.accepted == 2
    assert report["records"] == local.records_written == 12
    assert report["rejections"] == dict(local.rejections)
    assert report["split_retries"] == local.split_retries > 0
    assert report["items_computed"] == 4  # n * 1.0 + slack 2
    counters = report["beam_counters"]
    assert counters["build/items"] == 4
    assert counters["select/accepted"] == 2


def test_beam_output_is_readable_by_grain(beam_cli_run):
    import grain

    dataset_dir, _, _ = beam_cli_run
    source = RecordSource(dataset_dir, split="test")
    read = list(grain.MapDataset.source(source).to_iter_dataset())
    assert read == [source[i] for i in range(len(source))]
    assert {r.version for r in read} >= {"Text Only", "Text Dominant", "Vision Intensive"}
    assert all(isinstance(r, R.EvalProblem) for r in read)


@contextlib.contextmanager
def _faults_importable_by_workers():
    """The sandbox zygote inherits PYTHONPATH and can then import `_beam_faults`."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([HERE] + ([old] if old else []))
    try:
        yield
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


def _faulty_config(**kwargs):
    return B.BeamConfig(
        options=("--direct_num_workers=1", "--direct_running_mode=in_memory"),
        item_target="_beam_faults:build_item",
        **kwargs,
    )


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    """image_code with a failing figure (item 1), a failing job (item 2) and item 4 = item 0."""
    # items_per_task=2: items 0 and 4 are built by different elements.
    beam_config = _faulty_config(item_factor=1.0, item_slack=4, items_per_task=2)
    out = tmp_path_factory.mktemp("beam_faults")
    with _faults_importable_by_workers():
        return B.generate_dataset_beam(E.DatagenConfig(**CODE), str(out), beam_config)


def test_failures_are_counted_and_reported_and_the_rest_complete(faulty_run, executor):
    dataset_dir, report = faulty_run
    assert report["rejections"] == {
        "render_failed:exception": 1,
        "job_failed:exception": 1,
        "duplicate_spec": 1,
    }
    examples = report["rejection_examples"]
    assert examples["job_failed:exception"][0]["index"] == 2
    assert "planted job failure" in examples["job_failed:exception"][0]["detail"]
    assert examples["render_failed:exception"][0]["index"] == 1
    assert "planted figure failure" in examples["render_failed:exception"][0]["detail"]
    assert examples["duplicate_spec"][0]["index"] == 4  # the higher index is the duplicate
    counters = report["beam_counters"]
    assert counters["build/rejected:job_failed:exception"] == 1
    assert counters["build/rejected:render_failed:exception"] == 1
    assert counters["select/rejected:duplicate_spec"] == 1
    assert counters["build/items"] == report["items_computed"] == 8
    # n items still written: the first four good indices, equal to the local engine's items.
    source = RecordSource(dataset_dir, split="train")
    records = [source[i] for i in range(len(source))]
    assert [r.id for r in records] == [f"train-21-{i}" for i in (0, 3, 5, 6)]
    local = E.generate(E.DatagenConfig(**{**CODE, "n": 7}), executor)
    by_id = {r.id: r.to_dict() for r in local.records}
    assert [r.to_dict() for r in records] == [by_id[r.id] for r in records]


def test_too_few_items_still_writes_the_accepted_ones_and_raises(tmp_path):
    beam_config = _faulty_config(item_factor=1.0, item_slack=0, items_per_task=3)
    config = E.DatagenConfig(**{**CODE, "n": 3})  # items 1 and 2 fail: 1 of 3 accepted
    with _faults_importable_by_workers(), pytest.raises(B.ShortDatasetError, match="only 1 of 3"):
        B.generate_dataset_beam(config, str(tmp_path), beam_config)
    source = RecordSource(tmp_path, split="train")
    assert [source[i].id for i in range(len(source))] == ["train-21-0"]
    with open(os.path.join(source.dataset_dir, B.REPORT_FILE)) as f:
        report = json.load(f)
    assert report["short_by"] == 2 and report["beam_counters"]["select/short_by"] == 2


# ------------------------------------------------------------------------------------------
# Global selection (pure function): order-free, lowest index kept, same rule as the engine.
# ------------------------------------------------------------------------------------------


def _item(index, fingerprint, dhash, text_key="", n_records=1):
    return {
        "index": index,
        "error_kind": None,
        "split_retries": 0,
        "family": "f",
        "subtype": "s",
        "seed": index,
        "fingerprint": fingerprint,
        "dhash": dhash,
        "text_key": text_key,
        "n_records": n_records,
    }


def test_selection_keeps_the_lowest_index_whatever_the_arrival_order():
    far = (1 << 200) - 1  # 200 bits away from 0
    summaries = [
        _item(0, "a", 0b0),
        _item(1, "b", 0b1111),  # 4 bits from item 0 (same text): near-duplicate image
        _item(2, "c", 0b1111_1111),  # 8 bits from 0, 4 from item 1 (rejected, not indexed)
        _item(3, "a", far),  # spec duplicate of item 0
        _item(4, "d", 0b0, text_key="other text"),  # same image, other text: a new sample
        {"index": 5, "error_kind": "timeout", "error": "killed"},
        _item(6, "e", far, n_records=6),
        _item(7, "f", far ^ 1),  # 1 bit from item 6
        _item(8, "g", 1 << 100),  # past the cut: surplus
    ]
    config = E.DatagenConfig(recipe="captions", n=4, progress=False)
    results = set()
    for seed in range(6):
        shuffled = summaries[:]
        random.Random(seed).shuffle(shuffled)
        positions, report = B.select_items(shuffled, config, total=len(summaries))
        results.add((tuple(sorted(positions.items())), json.dumps(report, sort_keys=True)))
    assert len(results) == 1
    positions, report = B.select_items(summaries, config, total=len(summaries))
    assert positions == {0: 0, 2: 1, 4: 2, 6: 3}  # item 6 holds 6 records: positions 3..8
    assert report["records"] == 9 and report["accepted_items"] == 4
    assert report["items_tried"] == 7 and report["surplus_items"] == 2
    assert report["rejections"] == {
        "duplicate_image": 1,
        "duplicate_spec": 1,
        "job_failed:timeout": 1,
    }


def _plain_replay(summaries, n: int, max_distance: int) -> tuple[list[int], set]:
    """The selection rule written out plainly (no project code): in index order, accept an item
    unless its spec fingerprint was accepted before, or an accepted item with the same text key
    has an image hash within `max_distance` bits; stop at n accepted."""
    accepted, specs, images, reasons = [], set(), [], set()
    for s in sorted(summaries, key=lambda s: s["index"]):
        if len(accepted) == n:
            break
        if s["fingerprint"] in specs:
            reasons.add("duplicate_spec")
            continue
        near = [
            h
            for key, h in images
            if key == s["text_key"] and bin(h ^ s["dhash"]).count("1") <= max_distance
        ]
        if near:
            reasons.add("duplicate_image")
            continue
        reasons.add(None)
        accepted.append(s["index"])
        specs.add(s["fingerprint"])
        images.append((s["text_key"], s["dhash"]))
    return accepted, reasons


def test_selection_matches_a_plain_replay_of_the_rule():
    """Independent replay (a plain loop, not quality.Deduplicator) over 200 random items with
    many collisions, shuffled before the selection sees them."""
    rng = random.Random(0)
    bases = [rng.getrandbits(256) for _ in range(12)]

    def near(base):  # flips 0-6 bits: within the 4-bit threshold or not
        for bit in rng.sample(range(256), rng.randrange(7)):
            base ^= 1 << bit
        return base

    summaries = [
        _item(i, f"spec{rng.randrange(40)}", near(rng.choice(bases)), rng.choice("xy"))
        for i in range(200)
    ]
    config = E.DatagenConfig(recipe="captions", n=20, progress=False)
    assert config.quality.dhash_max_distance == 4  # the threshold `near` straddles
    expected, reasons = _plain_replay(summaries, config.n, config.quality.dhash_max_distance)
    assert reasons == {None, "duplicate_spec", "duplicate_image"}  # the case has collisions
    rng.shuffle(summaries)
    positions, _ = B.select_items(summaries, config, total=200)
    assert sorted(positions) == expected and len(expected) == 20


def test_selection_refuses_lost_items_and_reports_a_short_dataset():
    config = E.DatagenConfig(recipe="captions", n=2, progress=False)
    with pytest.raises(RuntimeError, match=r"missing \[1\]"):
        B.select_items([_item(0, "a", 0), _item(2, "b", 1 << 100)], config, total=3)
    positions, report = B.select_items([_item(0, "a", 0), _item(1, "a", 1 << 100)], config, 2)
    assert positions == {0: 0} and report["short_by"] == 1 and report["accepted_items"] == 1


def test_item_ranges_cover_every_index_once():
    ranges = B.index_ranges(10, 4)
    assert ranges == [(0, 4), (4, 8), (8, 10)]
    assert list(itertools.chain.from_iterable(range(*r) for r in ranges)) == list(range(10))
    config = E.DatagenConfig(recipe="captions", n=100, progress=False)
    assert B.items_to_compute(config, B.BeamConfig()) == 125 + 32
    assert B.items_to_compute(config, B.BeamConfig(item_factor=50.0)) == 2100  # engine's cap


def test_cli_refuses_preview_with_beam(tmp_path, capsys):
    from mathjax_vl.cli.main import main

    argv = ["datagen", "--recipe", "captions", "--n", "1", "--out", str(tmp_path)]
    argv += ["--runner", "beam", "--preview", str(tmp_path / "p.png"), "--no-progress"]
    assert main(argv) == 2
    assert "--preview needs the local runner" in capsys.readouterr().err
