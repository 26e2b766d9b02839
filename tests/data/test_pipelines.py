"""Grain pipelines: HF parity of ids/labels, pair alignment, determinism, checkpoint restore with
0 and 2 workers, bad records in the stream, and records -> storage -> Grain round trip."""

import dataclasses
import importlib.util
import json
import pathlib

import numpy as np
import pytest

from mathjax_vl.data import records as R
from mathjax_vl.data.bad_records import BadRecordBoundError, BadRecordConfig
from mathjax_vl.data.image_processing import ImageProcessingConfig, process_image
from mathjax_vl.data.pipelines import PipelineConfig
from mathjax_vl.data.tokenization import TokenizationConfig
from mathjax_vl.train.tasks import build_pipeline

_spec = importlib.util.spec_from_file_location(
    "_chat_reference", pathlib.Path(__file__).with_name("_chat_reference.py")
)
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

N_IMG = 4  # image tokens per image
SIZE = 16  # image side in pixels
IMG_CFG = ImageProcessingConfig.siglip(SIZE)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return ref.make_tokenizer_dir(tmp_path_factory.mktemp("tok") / "qwen2ish", True)


def _png(seed: int, h: int = 20, w: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    return R.encode_png(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


def _mm_records(n: int) -> list:
    out = []
    for i in range(n):
        k = 1 + i % 2
        user = "<image>" * k + f"\nFind angle ACB in figure {i}."
        turns = [R.Turn("user", user), R.Turn("assistant", f"The answer is {i * 7}.")]
        out.append(
            R.MultimodalConversation(
                turns=tuple(turns), images=tuple(_png(10 * i + j) for j in range(k))
            )
        )
    return out


def _text_records(n: int) -> list:
    return [
        R.TextConversation(
            turns=(
                R.Turn("user", "Solve x^2 - 5x + 6 = 0." + " Then explain." * (i % 4)),
                R.Turn("assistant", "The roots are x = 2 and x = 3." * (1 + i % 3)),
            )
        )
        for i in range(n)
    ]


def _cfg(objective, **kw):
    base = dict(
        objective=objective,
        batch_size=2,
        tokenization=TokenizationConfig(max_length=160, image_token_count=N_IMG),
        image=IMG_CFG,
        max_images_per_example=2,
        prefetch_batches=0,
    )
    base.update(kw)
    return PipelineConfig(**base)


def _take(it, k):
    return [next(it) for _ in range(k)]


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_multimodal_batches_match_hf_reference(tok_dir):
    recs = _mm_records(4)
    cfg = _cfg("multimodal_sft", shuffle=False, num_epochs=1, length_buckets=(64, 160))
    batches = list(build_pipeline(recs, cfg, tok_dir))
    assert len(batches) == 2
    for b, batch in enumerate(batches):
        length = batch["input_ids"].shape[1]
        assert length in (64, 160)
        assert batch["pixel_values"].shape == (2, 2, SIZE, SIZE, 3)
        assert batch["pixel_values"].dtype == np.float32 and batch["input_ids"].dtype == np.int32
        for row in range(2):
            rec = recs[2 * b + row]
            messages = [t.to_dict() for t in rec.turns]
            ids, labels = ref.hf_reference(tok_dir, messages, ref.OWN_TEMPLATE, N_IMG)
            n = len(ids)
            np.testing.assert_array_equal(batch["input_ids"][row, :n], ids)
            np.testing.assert_array_equal(batch["labels"][row, :n], labels)
            assert (batch["labels"][row, n:] == -100).all()
            np.testing.assert_array_equal(batch["attention_mask"][row], np.arange(length) < n)
            k = len(rec.images)
            np.testing.assert_array_equal(batch["image_mask"][row], [1] * k + [0] * (2 - k))
            for j, img in enumerate(rec.images):
                np.testing.assert_array_equal(
                    batch["pixel_values"][row, j], process_image(img, IMG_CFG)
                )
            assert (batch["pixel_values"][row, k:] == 0).all()


def test_pairs_align_response_positions(tok_dir):
    solution = "Angle ACB is 70 degrees, so the answer is 70."
    pairs = [
        R.PumaPair(
            text_rich=R.PumaSide(
                "<image>\nIn triangle ABC, angle ABC is 40 degrees and AB = AC. Find angle ACB.",
                (_png(1),),
            ),
            vision_rich=R.PumaSide("<image><image>\nFind angle ACB.", (_png(2), _png(3))),
            solution=solution,
        ),
        R.PumaPair(
            text_rich=R.PumaSide("Solve x^2 - 5x + 6 = 0 for the larger root.", ()),
            vision_rich=R.PumaSide("<image>\nSolve the equation.", (_png(4),)),
            solution="The roots are x = 2 and x = 3.",
        ),
    ]
    cfg = _cfg("puma_pair", shuffle=False, num_epochs=1, response_buckets=(8, 48))
    (batch,) = list(build_pipeline(pairs, cfg, tok_dir))
    assert batch["response_mask"].shape == (2, 48)  # 8 < longest response <= 48
    for row, pair in enumerate(pairs):
        mask = batch["response_mask"][row].astype(bool)
        for prefix, side in (("weak_", "vision_rich"), ("strong_", "text_rich")):
            conv = pair.side_conversation(side)
            ids, labels = ref.hf_reference(
                tok_dir, [t.to_dict() for t in conv.turns], ref.OWN_TEMPLATE, N_IMG
            )
            np.testing.assert_array_equal(batch[f"{prefix}input_ids"][row, : len(ids)], ids)
            expected_pos = np.flatnonzero(np.asarray(labels) != -100) - 1
            pos = batch[f"{prefix}response_positions"][row][mask]
            np.testing.assert_array_equal(pos, expected_pos)
            # The label after each aligned position is the same token on both sides.
            np.testing.assert_array_equal(
                batch[f"{prefix}labels"][row][pos + 1], batch["response_labels"][row][mask]
            )
        # Different prompts and image-token counts: same tokens at different positions.
        assert (
            batch["weak_response_positions"][row][0] != batch["strong_response_positions"][row][0]
        )
    hf_tok = ref.AutoTokenizer.from_pretrained(tok_dir)
    assert hf_tok.decode(batch["response_labels"][0][batch["response_mask"][0] == 1]) == (
        solution + "<|im_end|>"
    )
    # A response longer than the largest response bucket is a too_long record, not a crash.
    with pytest.raises(R.RecordError, match="too_long"):
        list(build_pipeline(pairs, dataclasses.replace(cfg, response_buckets=(8,)), tok_dir))


def test_text_packing_and_determinism(tok_dir):
    recs = _text_records(40)
    cfg = _cfg("text_sft", batch_size=2, seed=3, num_packing_bins=2)
    a = _take(iter(build_pipeline(recs, cfg, tok_dir)), 4)
    b = _take(iter(build_pipeline(recs, cfg, tok_dir)), 4)
    c = _take(iter(build_pipeline(recs, dataclasses.replace(cfg, seed=4), tok_dir)), 4)
    _assert_batches_equal(a, b)
    assert any(not np.array_equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, c))
    for batch in a:
        assert batch["input_ids"].shape == (2, 160)
        seg, pos = batch["segment_ids"], batch["positions"]
        assert seg.max() >= 2  # several conversations per row
        for row in range(2):
            for s in range(1, seg[row].max() + 1):
                where = np.flatnonzero(seg[row] == s)
                np.testing.assert_array_equal(pos[row, where], np.arange(len(where)))
                assert batch["labels"][row, where[0]] == -100
            np.testing.assert_array_equal(batch["attention_mask"][row], seg[row] > 0)
            assert (batch["labels"][row][seg[row] == 0] == -100).all()


def test_sharding_by_process_partitions_the_stream(tok_dir):
    recs = _mm_records(8)
    seen = []
    for p in range(2):
        cfg = _cfg("multimodal_sft", num_epochs=1, process_index=p, process_count=2, batch_size=1)
        for batch in build_pipeline(recs, cfg, tok_dir):
            seen.append(batch["input_ids"][0][batch["attention_mask"][0] == 1].tobytes())
    all_rows = []
    for batch in build_pipeline(recs, _cfg("multimodal_sft", num_epochs=1, batch_size=1), tok_dir):
        all_rows.append(batch["input_ids"][0][batch["attention_mask"][0] == 1].tobytes())
    assert sorted(seen) == sorted(all_rows) and len(set(all_rows)) == 8


def test_restore_checkpointed_iterator_in_process(tok_dir, tmp_path):
    """k batches, save (JSON, and orbax through grain's handler), restore -> batches k+1..."""
    import grain
    import orbax.checkpoint as ocp

    recs = _text_records(30)
    cfg = _cfg("text_sft", seed=1, prefetch_batches=2)
    it = iter(build_pipeline(recs, cfg, tok_dir))
    _take(it, 3)
    state = json.loads(json.dumps(it.get_state()))
    mngr = ocp.CheckpointManager(tmp_path / "ckpt", item_names=("data",))
    mngr.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    mngr.wait_until_finished()
    expected = _take(it, 4)
    restored = iter(build_pipeline(recs, cfg, tok_dir))
    restored.set_state(state)
    _assert_batches_equal(_take(restored, 4), expected)
    via_orbax = iter(build_pipeline(recs, cfg, tok_dir))
    mngr.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(via_orbax)))
    _assert_batches_equal(_take(via_orbax, 4), expected)


def test_two_workers_restore_skip_and_worker_invariance(tok_dir):
    """2 worker processes: one corrupt image skipped and counted, batches equal to the 0-worker
    run, and a restored iterator continues exactly (counts included)."""
    recs = _mm_records(9)
    bad = {
        "kind": "multimodal_conversation",
        "turns": recs[0].to_dict()["turns"],
        "images": [b"\x89PNG\r\n\x1a\n" + b"garbage"],
    }
    source = [r.to_dict() for r in recs[:4]] + [bad] + [r.to_dict() for r in recs[4:]]
    policy = BadRecordConfig(policy="skip", max_skipped_fraction=0.5, min_records_for_bound=5)
    cfg0 = _cfg("multimodal_sft", seed=5, num_workers=0, bad_records=policy)
    p0 = build_pipeline(source, cfg0, tok_dir)
    reference = _take(iter(p0), 8)
    cfg2 = dataclasses.replace(cfg0, num_workers=2, prefetch_batches=1)
    p2 = build_pipeline(source, cfg2, tok_dir)
    it = iter(p2)
    try:
        head = _take(it, 3)
        state = json.loads(json.dumps(it.get_state()))
        tail = _take(it, 5)
    finally:
        it.close()
    _assert_batches_equal(head + tail, reference)
    assert p0.tracker.skipped_by_reason["corrupt_image"] >= 1
    p2b = build_pipeline(source, cfg2, tok_dir)
    it2 = iter(p2b)
    try:
        it2.set_state(state)
        _assert_batches_equal(_take(it2, 5), tail)
    finally:
        it2.close()
    assert p2b.tracker.skipped_by_reason["corrupt_image"] >= 1
    assert "bad_records/skipped/corrupt_image" in p2b.metrics()


def _bad_source():
    good = [r.to_dict() for r in _mm_records(6)]
    missing = {"kind": "multimodal_conversation", "images": []}  # no "turns"
    empty = {
        "kind": "multimodal_conversation",
        "turns": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "  "}],
        "images": [],
    }
    corrupt = dict(good[0], images=[b"\x89PNG\r\n\x1a\n" + b"not a png"])
    too_long = {
        "kind": "multimodal_conversation",
        "turns": [
            {"role": "user", "content": "<image>\n" + "Explain. " * 80},
            {"role": "assistant", "content": "Done."},
        ],
        "images": [good[0]["images"][0]],
    }
    return [*good, missing, empty, corrupt, too_long]


def test_bad_records_error_policy_names_record(tok_dir):
    src = _bad_source()
    for index, reason in (
        (6, "missing_field"),
        (7, "empty_response"),
        (8, "corrupt_image"),
        (9, "too_long"),
    ):
        cfg = _cfg("multimodal_sft", shuffle=False, num_epochs=1, batch_size=1)
        only = [src[index]]
        with pytest.raises(R.RecordError, match=rf"record 0: .*\[{reason}\]"):
            list(build_pipeline(only, cfg, tok_dir))


def test_bad_records_skip_policy_counts_and_bound(tok_dir):
    src = _bad_source()
    policy = BadRecordConfig(policy="skip", max_skipped_fraction=0.5, min_records_for_bound=1)
    cfg = _cfg("multimodal_sft", shuffle=False, num_epochs=1, batch_size=1, bad_records=policy)
    pipe = build_pipeline(src, cfg, tok_dir)
    batches = list(pipe)
    assert len(batches) == 6
    assert dict(pipe.tracker.skipped_by_reason) == {
        "missing_field": 1,
        "empty_response": 1,
        "corrupt_image": 1,
        "too_long": 1,
    }
    assert pipe.metrics()["bad_records/seen"] == 10
    assert "too_long: 1" in pipe.finalize()
    strict = dataclasses.replace(
        cfg, bad_records=BadRecordConfig(policy="skip", max_skipped_fraction=0.2)
    )
    with pytest.raises(BadRecordBoundError, match="skipped 4 of 10"):
        pipe = build_pipeline(src, strict, tok_dir)
        list(pipe)
        pipe.finalize()


def test_round_trip_records_storage_grain(tok_dir, tmp_path):
    """Records -> TFDS ArrayRecord -> Grain: the records read back equal the originals and the
    decoded images are pixel-identical."""
    import grain

    from mathjax_vl.data import storage

    recs = _mm_records(5)
    storage.write_dataset(recs, tmp_path, "mm")
    src = storage.open_source(tmp_path, "train")
    back = list(grain.MapDataset.source(src).to_iter_dataset())
    assert back == recs
    for a, b in zip(back, recs):
        for x, y in zip(a.images, b.images):
            np.testing.assert_array_equal(R.decode_image(x), R.decode_image(y))
    # And through the full multimodal pipeline: same batches as from the in-memory records.
    cfg = _cfg("multimodal_sft", shuffle=False, num_epochs=1, batch_size=1)
    _assert_batches_equal(
        list(build_pipeline(src, cfg, tok_dir)), list(build_pipeline(recs, cfg, tok_dir))
    )


def test_image_code_and_caption_objectives(tok_dir):
    from mathjax_vl.train.tasks.image_to_code import CODE_PROMPTS

    codes = [
        R.ImageCode(
            image=_png(7), code="import matplotlib\nplt.plot([0, 1], [0, 1])", language="python"
        ),
        R.ImageCode(image=_png(8), code="\\draw (0,0) -- (1,1);", language="tikz"),
    ]
    cfg = _cfg("image_code", shuffle=False, num_epochs=1)
    (batch,) = list(build_pipeline(codes, cfg, tok_dir))
    for row, rec in enumerate(codes):
        messages = [
            {"role": "user", "content": "<image>\n" + CODE_PROMPTS[rec.language]},
            {"role": "assistant", "content": rec.code},
        ]
        ids, labels = ref.hf_reference(tok_dir, messages, ref.OWN_TEMPLATE, N_IMG)
        np.testing.assert_array_equal(batch["input_ids"][row, : len(ids)], ids)
        np.testing.assert_array_equal(batch["labels"][row, : len(ids)], labels)
        np.testing.assert_array_equal(
            batch["pixel_values"][row, 0], process_image(rec.image, IMG_CFG)
        )
        np.testing.assert_array_equal(batch["image_mask"][row], [1, 0])

    caps = [
        R.ImageCaption(image=_png(9), caption="A circle with center O and chord AB."),
        R.ImageCaption(image=_png(10), caption="The graph of y = x^2 - 5x + 6. " * 10),
    ]
    cfg = _cfg("image_caption", shuffle=False, num_epochs=1, caption_max_length=24)
    (batch,) = list(build_pipeline(caps, cfg, tok_dir))
    hf = ref.AutoTokenizer.from_pretrained(tok_dir)
    assert batch["pixel_values"].shape == (2, SIZE, SIZE, 3)
    for row, rec in enumerate(caps):
        ids = hf(rec.caption, truncation=True, max_length=24)["input_ids"]
        np.testing.assert_array_equal(batch["caption_ids"][row, : len(ids)], ids)
        np.testing.assert_array_equal(batch["caption_mask"][row], np.arange(24) < len(ids))
        np.testing.assert_array_equal(batch["pixel_values"][row], process_image(rec.image, IMG_CFG))


def test_packed_segments_equal_hf_reference(tok_dir):
    recs = _text_records(12)
    refs = {}
    for r in recs:
        ids, labels = ref.hf_reference(tok_dir, [t.to_dict() for t in r.turns], ref.OWN_TEMPLATE, 1)
        refs[tuple(ids)] = labels
    cfg = _cfg("text_sft", num_epochs=1, drop_remainder=False, num_packing_bins=3)
    found = 0
    for batch in build_pipeline(recs, cfg, tok_dir):
        for row in range(batch["input_ids"].shape[0]):
            seg = batch["segment_ids"][row]
            for s in range(1, seg.max() + 1):
                where = seg == s
                key = tuple(batch["input_ids"][row][where].tolist())
                assert key in refs  # every segment is one whole templated conversation
                np.testing.assert_array_equal(batch["labels"][row][where], refs[key])
                found += 1
    assert found == 12


def test_augmentation_is_seeded_per_example(tok_dir):
    from mathjax_vl.data.image_processing import AugmentConfig

    img = dataclasses.replace(
        IMG_CFG, augment=AugmentConfig(scale_range=(0.6, 1.4), gamma_range=(0.5, 2.0))
    )
    cfg = _cfg("multimodal_sft", image=img, seed=2)
    recs = _mm_records(4)
    a = _take(iter(build_pipeline(recs, cfg, tok_dir)), 4)
    b = _take(iter(build_pipeline(recs, cfg, tok_dir)), 4)
    _assert_batches_equal(a, b)
    plain = _take(iter(build_pipeline(recs, dataclasses.replace(cfg, image=IMG_CFG), tok_dir)), 4)
    assert not np.array_equal(a[0]["pixel_values"], plain[0]["pixel_values"])
    np.testing.assert_array_equal(a[0]["input_ids"], plain[0]["input_ids"])
    # Second epoch of the same record draws new augmentation (stream index differs).
    assert not all(
        np.array_equal(x["pixel_values"], y["pixel_values"]) for x, y in zip(a[:2], a[2:])
    )


def test_config_from_plain_data():
    import ml_collections

    from mathjax_vl.data.image_processing import AugmentConfig
    from mathjax_vl.data.pipelines import pipeline_config_from_dict

    cfg = pipeline_config_from_dict(
        ml_collections.ConfigDict(
            {
                "objective": "puma_pair",
                "batch_size": 4,
                "length_buckets": [256, 512],
                "tokenization": {
                    "max_length": 512,
                    "image_token_count": 728,
                    "too_long": "truncate",
                },
                "image": {"height": 384, "width": 384, "augment": {"gamma_range": [0.8, 1.2]}},
                "bad_records": {"policy": "skip", "max_skipped_fraction": 0.05},
            }
        )
    )
    assert cfg.length_buckets == (256, 512) and cfg.tokenization.too_long == "truncate"
    assert cfg.image.augment == AugmentConfig(gamma_range=(0.8, 1.2))
    assert cfg.bad_records.policy == "skip"
    with pytest.raises(ValueError, match="unknown keys \\['max_len'\\]"):
        pipeline_config_from_dict(
            {"objective": "text_sft", "batch_size": 1, "tokenization": {"max_len": 5}}
        )
