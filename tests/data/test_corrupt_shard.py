"""A flipped byte in an ArrayRecord shard is a bad record naming the shard file and the record's
index: counted under `skip` (within the bound), raised under `error`, never a crash."""

import importlib.util
import pathlib

import pytest

from mathjax_vl.data import records as R
from mathjax_vl.data import storage
from mathjax_vl.data.bad_records import BadRecordConfig
from mathjax_vl.data.pipelines import PipelineConfig
from mathjax_vl.data.tokenization import TokenizationConfig
from mathjax_vl.train.tasks import build_pipeline

_spec = importlib.util.spec_from_file_location(
    "_chat_reference", pathlib.Path(__file__).with_name("_chat_reference.py")
)
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

N = 120
BAD = 77  # the record whose bytes get a flipped byte


def _records(changed: int = -1) -> list:
    return [
        R.TextConversation(
            id=f"r{i}",
            turns=(
                R.Turn("user", f"question {i:04d}: x + {i} = {'!' if i == changed else '?'}"),
                R.Turn("assistant", f"{i}"),
            ),
        )
        for i in range(N)
    ]


def _shard(version: str) -> pathlib.Path:
    shards = sorted(pathlib.Path(version).glob("*.array_record-*"))
    assert len(shards) == 1
    return shards[0]


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory):
    """(dataset dir, shard file) with one byte of record BAD's stored chunk flipped (same size).

    The shard is zstd-compressed, so record BAD's bytes are found independently of the reader:
    a second dataset that differs only in record BAD's text first differs from this one inside
    BAD's chunk (every earlier chunk is byte-identical)."""
    root = tmp_path_factory.mktemp("ds")
    version = storage.write_dataset(_records(), root / "a", "conv")
    other = storage.write_dataset(_records(changed=BAD), root / "b", "conv")
    data, ref_data = bytearray(_shard(version).read_bytes()), _shard(other).read_bytes()
    assert len(data) == len(ref_data)
    at = next(i for i, (x, y) in enumerate(zip(data, ref_data)) if x != y)
    assert 0 < at < len(data) // 2
    data[at] ^= 0x01
    _shard(version).write_bytes(bytes(data))
    return version, str(_shard(version))


def test_corrupt_record_raises_record_error_naming_shard_and_index(corrupt):
    version, shard = corrupt
    src = storage.open_source(version)
    with pytest.raises(R.RecordError) as err:
        src[BAD]
    assert err.value.source == shard and err.value.index == BAD
    assert err.value.reason == "bad_format" and "corrupt ArrayRecord" in str(err.value)
    assert src[BAD - 1].id == f"r{BAD - 1}" and src[BAD + 1].id == f"r{BAD + 1}"
    # a batched read holding the bad record names it too (not an anonymous batch failure)
    with pytest.raises(R.RecordError, match=f"record {BAD}:"):
        src.__getitems__([BAD - 1, BAD, BAD + 1])
    # the index maps into the right shard of a multi-shard split
    src._shard_table = [(0, 50, "a"), (50, 70, "b")]
    assert src.locate(BAD) == ("b", BAD - 50) and src.locate(3) == ("a", 3)


def _pipeline(version, tok_dir, policy):
    cfg = PipelineConfig(
        objective="text_sft",
        batch_size=4,
        tokenization=TokenizationConfig(max_length=64),
        shuffle=False,
        num_epochs=1,
        drop_remainder=False,
        prefetch_batches=0,
        bad_records=BadRecordConfig(policy=policy, max_skipped_fraction=0.02),
    )
    return build_pipeline(storage.open_source(version), cfg, tok_dir)


def test_flipped_byte_counted_and_named_under_skip(corrupt, tmp_path):
    version, shard = corrupt
    tok_dir = ref.make_tokenizer_dir(tmp_path / "tok", True)
    pipe = _pipeline(version, tok_dir, "skip")
    batches = list(iter(pipe))
    assert batches
    assert pipe.tracker.seen == N and pipe.tracker.skipped == 1
    assert dict(pipe.tracker.skipped_by_reason) == {"bad_format": 1}
    example = pipe.tracker.examples["bad_format"]
    assert example.startswith(f"{shard} record {BAD}:")
    assert f"{shard} record {BAD}:" in pipe.finalize()  # the final report names it
    assert pipe.metrics()["bad_records/skipped/bad_format"] == 1.0


def test_flipped_byte_is_an_error_under_error_policy(corrupt, tmp_path):
    version, shard = corrupt
    tok_dir = ref.make_tokenizer_dir(tmp_path / "tok", True)
    it = iter(_pipeline(version, tok_dir, "error"))
    with pytest.raises(R.RecordError) as err:
        for _ in it:
            pass
    assert (err.value.source, err.value.index, err.value.reason) == (shard, BAD, "bad_format")


def test_every_other_record_reads_back_intact(corrupt):
    """Only the flipped record is bad: all the others decode to what was written."""
    version, _ = corrupt
    src = storage.open_source(version)
    want = _records()
    for i in range(N):
        if i != BAD:
            assert src[i] == want[i]
