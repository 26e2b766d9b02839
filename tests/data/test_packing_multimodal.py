"""Multimodal packing through the real pipeline: every example lands whole in exactly one row
(tokens, labels, images in order, restarting positions), PUMA pairs are packed in lockstep with
response positions that index the packed rows, the state resumes exactly, over-long examples and
examples over the image budget are counted too_long records (never cut), the packer reports
its fill."""

import importlib.util
import pathlib

import numpy as np
import pytest

from mathjax_vl.data import packing
from mathjax_vl.data import records as R
from mathjax_vl.data.bad_records import BadRecordConfig
from mathjax_vl.data.image_processing import ImageProcessingConfig
from mathjax_vl.data.pipelines import PipelineConfig
from mathjax_vl.data.tokenization import ConversationTokenizer, TokenizationConfig
from mathjax_vl.train.tasks import build_pipeline

_spec = importlib.util.spec_from_file_location(
    "_chat_reference", pathlib.Path(__file__).with_name("_chat_reference.py")
)
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

N_IMG, SIZE, T = 4, 16, 160


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return ref.make_tokenizer_dir(tmp_path_factory.mktemp("tok") / "qwen2ish", True)


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return R.encode_png(rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8))


def _mm(n: int) -> list:
    out = []
    for i in range(n):
        k = i % 3  # 0, 1 or 2 images
        user = "<image>" * k + f"\nFind angle ACB in figure {i}." + " Explain." * (i % 4)
        turns = (R.Turn("user", user), R.Turn("assistant", f"The answer is {i * 7}."))
        out.append(
            R.MultimodalConversation(turns, images=tuple(_png(10 * i + j) for j in range(k)))
        )
    return out


def _pairs(n: int) -> list:
    out = []
    for i in range(n):
        out.append(
            R.PumaPair(
                text_rich=R.PumaSide(f"In triangle {i}, angle B is 40 degrees. Find angle C.", ()),
                vision_rich=R.PumaSide("<image>\nFind angle C." + " Look." * (i % 3), (_png(i),)),
                solution=f"Angle C is {70 + i} degrees." + " Indeed." * (i % 2),
            )
        )
    return out


def _cfg(objective, layout="packing", **kw):
    base = dict(
        objective=objective,
        batch_size=2,
        shuffle=False,
        num_epochs=1,
        drop_remainder=False,
        tokenization=TokenizationConfig(max_length=T, image_token_count=N_IMG),
        image=ImageProcessingConfig.siglip(SIZE),
        max_images_per_example=3,
        response_buckets=(48,),
        prefetch_batches=0,
        layout=layout,
        packing_window=8,
    )
    base.update(kw)
    return PipelineConfig(**base)


def test_sft_examples_land_whole_and_in_order(tok_dir):
    recs = _mm(12)
    flat = list(build_pipeline(recs, _cfg("multimodal_sft", "bucketed", batch_size=1), tok_dir))
    packed_pipe = build_pipeline(recs, _cfg("multimodal_sft"), tok_dir)
    packed = list(packed_pipe)
    assert len(flat) == 12
    image_id = ConversationTokenizer(tok_dir, _cfg("multimodal_sft").tokenization).image_token_id
    # each unpacked example, by its token content -> (ids, labels, pixels)
    want = {}
    for b in flat:
        n = int(b["attention_mask"][0].sum())
        k = int(b["image_mask"][0].sum())
        want[b["input_ids"][0, :n].tobytes()] = (b["labels"][0, :n], b["pixel_values"][0, :k])
    seen = 0
    for batch in packed:
        for row in range(batch["input_ids"].shape[0]):
            seg = batch["segment_ids"][row]
            img_at = 0
            n_img = int(batch["image_mask"][row].sum())
            assert (batch["image_mask"][row, :n_img] == 1).all()
            assert (batch["pixel_values"][row, n_img:] == 0).all()
            for s in range(1, seg.max() + 1):
                where = np.flatnonzero(seg == s)
                assert np.array_equal(where, np.arange(where[0], where[0] + len(where)))
                np.testing.assert_array_equal(batch["positions"][row, where], np.arange(len(where)))
                ids = batch["input_ids"][row, where]
                labels, pixels = want.pop(ids.tobytes())
                expected = labels.copy()
                expected[0] = -100  # never trained anyway (a prompt token)
                np.testing.assert_array_equal(batch["labels"][row, where], expected)
                k = len(pixels)
                assert (ids == image_id).sum() == k * N_IMG
                np.testing.assert_array_equal(
                    batch["pixel_values"][row, img_at : img_at + k], pixels
                )
                img_at += k
                seen += 1
            assert img_at == n_img
            assert (batch["labels"][row, seg == 0] == -100).all()
    assert seen == 12 and not want
    rows = sum(b["input_ids"].shape[0] for b in packed)
    assert rows < 12
    m = packed_pipe.metrics()
    assert m["packing/rows"] == rows and m["packing/examples_per_row"] == pytest.approx(12 / rows)
    real = sum(int(b["attention_mask"].sum()) for b in packed)
    assert m["packing/token_fill"] == pytest.approx(real / (rows * T))


def test_pairs_pack_in_lockstep_with_shifted_positions(tok_dir):
    pairs = _pairs(9)
    packed = list(build_pipeline(pairs, _cfg("puma_pair"), tok_dir))
    flat = list(build_pipeline(pairs, _cfg("puma_pair", "bucketed", batch_size=1), tok_dir))
    n_pairs = 0
    for batch in packed:
        for row in range(batch["weak_input_ids"].shape[0]):
            w, s = batch["weak_segment_ids"][row], batch["strong_segment_ids"][row]
            assert w.max() == s.max()  # same pairs in the row of both sides
            n_pairs += int(w.max())
            mask = batch["response_mask"][row].astype(bool)
            assert mask.sum() > 0 and not mask[mask.sum() :].any()
            labels = batch["response_labels"][row, mask]
            for side, seg in (("weak_", w), ("strong_", s)):
                pos = batch[side + "response_positions"][row, mask]
                # the next token after each aligned position is the response token
                np.testing.assert_array_equal(batch[side + "input_ids"][row, pos + 1], labels)
                np.testing.assert_array_equal(seg[pos], seg[pos + 1])  # never across segments
            # pair j's responses in both sides belong to the same segment number
            np.testing.assert_array_equal(
                w[batch["weak_response_positions"][row, mask]],
                s[batch["strong_response_positions"][row, mask]],
            )
    assert n_pairs == 9
    flat_labels = sorted(
        b["response_labels"][0, b["response_mask"][0] == 1].tobytes() for b in flat
    )
    packed_labels = []
    for b in packed:
        for row in range(b["response_labels"].shape[0]):
            seg = b["weak_segment_ids"][row][b["weak_response_positions"][row]]
            valid = b["response_mask"][row] == 1
            for j in range(1, b["weak_segment_ids"][row].max() + 1):
                packed_labels.append(b["response_labels"][row, valid & (seg == j)].tobytes())
    assert sorted(packed_labels) == flat_labels


def test_resume_is_exact_mid_window(tok_dir):
    recs = _mm(30)
    cfg = _cfg("multimodal_sft", num_epochs=None, shuffle=True, packing_window=6)
    ref_it = iter(build_pipeline(recs, cfg, tok_dir))
    for _ in range(3):
        next(ref_it)
    state = ref_it.get_state()
    want = [next(ref_it) for _ in range(5)]
    it = iter(build_pipeline(recs, cfg, tok_dir))
    it.set_state(state)
    got = [next(it) for _ in range(5)]
    for a, b in zip(want, got):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_too_long_and_too_many_images_are_counted_never_cut(tok_dir):
    recs = _mm(6)
    long_turns = (R.Turn("user", "Explain. " * 200), R.Turn("assistant", "No."))
    recs.insert(2, R.TextConversation(long_turns))
    many = R.MultimodalConversation(
        (R.Turn("user", "<image>" * 4 + "\nCount."), R.Turn("assistant", "Four.")),
        images=tuple(_png(900 + j) for j in range(4)),
    )
    recs.insert(4, many)
    skip = BadRecordConfig(policy="skip", max_skipped_fraction=0.5)
    pipe = build_pipeline(recs, _cfg("multimodal_sft", bad_records=skip), tok_dir)
    batches = list(pipe)
    segs = sum(int(b["segment_ids"].max(axis=1).sum()) for b in batches)
    assert segs == 6
    assert pipe.metrics()["bad_records/skipped/too_long"] == 2
    with pytest.raises(R.RecordError, match="too_long"):
        list(build_pipeline(recs, _cfg("multimodal_sft"), tok_dir))


def test_first_fit_decreasing_respects_every_capacity():
    spec = packing.PackSpec(("",), seq_len=10, max_images=2, image_shape=(1, 1, 3), pad_token_id=0)
    sizes = [((6, 0),), ((5, 1),), ((4, 1),), ((3, 1),), ((2, 0),), ((10, 2),)]
    rows = packing.first_fit_decreasing(sizes, spec)
    assert sorted(i for r in rows for i in r) == list(range(6))
    for r in rows:
        assert sum(sizes[i][0][0] for i in r) <= 10 and sum(sizes[i][0][1] for i in r) <= 2
    assert sorted(map(sorted, rows)) == [[0, 2], [1, 3, 4], [5]]  # 6+4 | 5+3+2 | 10
    with pytest.raises(ValueError, match="does not fit"):
        packing.first_fit_decreasing([((11, 0),)], spec)
