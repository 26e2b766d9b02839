"""InternVL's dynamic resolution: our tiles equal transformers' GotOcr2 processor (as InternVL
configures it) pixel for pixel, with the same tile counts, on eight aspect ratios; in the
pipeline an image's token run follows its tile count, tiles fill the image slots in order, a
record needing more tiles than the compiled budget is an error naming the numbers, and truncation
drops whole tiled images."""

import importlib.util
import io
import pathlib

import numpy as np
import pytest
from PIL import Image
from transformers import GotOcr2ImageProcessorPil

from mathjax_vl.data import records as R
from mathjax_vl.data.image_processing import (
    ImageProcessingConfig,
    num_tiles,
    process_image_tiles,
)
from mathjax_vl.data.pipelines import PipelineConfig
from mathjax_vl.data.tokenization import TokenizationConfig, load_tokenizer
from mathjax_vl.models.internvit import IMAGENET_MEAN, IMAGENET_STD, InternViTConfig
from mathjax_vl.train.tasks import build_pipeline

_spec = importlib.util.spec_from_file_location(
    "_chat_reference", pathlib.Path(__file__).with_name("_chat_reference.py")
)
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

TILE, MAX_TILES, N_TOK = 28, 6, 4  # 28 px tiles, <= 6 (+ thumbnail) per image, 4 tokens/tile
# (height, width): square (a tie won by 2 x 2), wide, tall, 5:7, very wide, near 2:1 tall,
# 5:4 tall (a 2 x 3 grid), tiny
SHAPES = [(40, 40), (30, 90), (90, 30), (50, 70), (20, 130), (64, 33), (35, 28), (9, 13)]
CFG = ImageProcessingConfig(
    height=TILE, width=TILE, resize_mode="dynamic_tiles", mean=IMAGENET_MEAN, std=IMAGENET_STD,
    max_tiles=MAX_TILES,
)  # fmt: skip


@pytest.fixture(scope="module")
def hf():
    return GotOcr2ImageProcessorPil(
        size={"height": TILE, "width": TILE}, crop_to_patches=True, min_patches=1,
        max_patches=MAX_TILES, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
    )  # fmt: skip


def _image(seed, h, w):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_tiles_equal_the_transformers_processor(hf):
    counts = []
    for i, (h, w) in enumerate(SHAPES):
        img = _image(i, h, w)
        out = hf(images=[Image.fromarray(img)], return_tensors="np")
        want = out["pixel_values"].transpose(0, 2, 3, 1)  # CHW -> HWC
        got = process_image_tiles(img, CFG)
        assert got.shape == want.shape, (h, w)
        np.testing.assert_array_equal(got, want, err_msg=str((h, w)))
        assert num_tiles(h, w, CFG) == out["num_patches"][0] == hf.get_number_of_image_patches(h, w)
        counts.append(len(got))
    assert len(set(counts)) >= 4, counts  # the shapes exercise several grids


def test_tower_and_saved_processor_give_the_same_settings(hf, tmp_path):
    tower = InternViTConfig(hidden_size=32, num_heads=4, image_size=TILE, patch_size=7,
                            max_num_tiles=MAX_TILES)  # fmt: skip
    assert ImageProcessingConfig.for_tower(tower) == CFG
    hf.save_pretrained(tmp_path)
    assert ImageProcessingConfig.from_hf_dir(str(tmp_path)) == CFG


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return ref.make_tokenizer_dir(tmp_path_factory.mktemp("tok") / "qwen2ish", True)


def _record(shapes, seed=0, question="Describe the figures."):
    images = tuple(R.encode_png(_image(seed + k, h, w)) for k, (h, w) in enumerate(shapes))
    turns = (R.Turn("user", "<image>" * len(shapes) + "\n" + question),
             R.Turn("assistant", "Two triangles and a circle."))  # fmt: skip
    return R.MultimodalConversation(turns=turns, images=images)


def _pipeline(recs, tok_dir, budget, max_length=200):
    cfg = PipelineConfig(
        objective="multimodal_sft", batch_size=1, shuffle=False, num_epochs=1, prefetch_batches=0,
        tokenization=TokenizationConfig(max_length=max_length, image_token_count=N_TOK,
                                        too_long="truncate"),
        image=CFG, max_images_per_example=budget,
    )  # fmt: skip
    return list(build_pipeline(recs, cfg, tok_dir))


def test_token_runs_and_slots_follow_the_tiles(hf, tok_dir):
    shapes = [(30, 90), (28, 28)]  # 3 x 1 grid + thumbnail = 4 tiles, then 1 tile
    rec = _record(shapes)
    (batch,) = _pipeline([rec], tok_dir, budget=6)
    pil = [Image.open(io.BytesIO(b)) for b in rec.images]
    out = hf(images=pil, return_tensors="np")
    tiles = list(out["num_patches"])
    assert tiles == [4, 1]
    # reference: one image token per image, then HF InternVLProcessor's expansion of image k
    # into image_seq_length x num_patches[k] context tokens
    ids, labels = ref.hf_reference(tok_dir, [t.to_dict() for t in rec.turns], ref.OWN_TEMPLATE, 1)
    image_id = load_tokenizer(tok_dir).convert_tokens_to_ids("<image>")
    reps = np.ones(len(ids), int)
    reps[np.asarray(ids) == image_id] = [N_TOK * n for n in tiles]
    want_ids = np.repeat(ids, reps)
    n = len(want_ids)
    np.testing.assert_array_equal(batch["input_ids"][0, :n], want_ids)
    np.testing.assert_array_equal(batch["labels"][0, :n], np.repeat(labels, reps))
    assert (batch["input_ids"][0] == image_id).sum() == N_TOK * 5
    np.testing.assert_array_equal(batch["image_mask"][0], [1] * 5 + [0])
    np.testing.assert_array_equal(
        batch["pixel_values"][0, :5], out["pixel_values"].transpose(0, 2, 3, 1)
    )
    assert (batch["pixel_values"][0, 5:] == 0).all()


def test_tiles_over_the_image_budget_are_an_error_naming_the_numbers(tok_dir):
    rec = _record([(30, 90), (50, 70)])  # 4 + 7 tiles
    with pytest.raises(R.RecordError) as err:
        _pipeline([rec], tok_dir, budget=8)
    msg = str(err.value)
    assert "11 tiles [4, 7]" in msg and "max_images_per_example 8" in msg and "max_tiles 6" in msg


def test_truncation_drops_whole_tiled_images(tok_dir):
    images = tuple(R.encode_png(_image(k, h, w)) for k, (h, w) in enumerate([(28, 28), (30, 90)]))
    turns = (R.Turn("user", "<image>\nWhat is this?"), R.Turn("assistant", "A circle."),
             R.Turn("user", "<image>\nAnd this?"), R.Turn("assistant", "A triangle."))  # fmt: skip
    rec = R.MultimodalConversation(turns=turns, images=images)  # 1 tile, then 4 tiles
    (full,) = _pipeline([rec], tok_dir, budget=6)
    image_id = load_tokenizer(tok_dir).convert_tokens_to_ids("<image>")
    pos = np.flatnonzero(full["input_ids"][0] == image_id)
    assert len(pos) == N_TOK * 5
    start = int(pos[N_TOK])  # the second image's run; cut 5 tokens into it
    (batch,) = _pipeline([rec], tok_dir, budget=6, max_length=start + 5)
    assert int(batch["attention_mask"][0].sum()) == start
    assert (batch["input_ids"][0] == image_id).sum() == N_TOK
    np.testing.assert_array_equal(batch["image_mask"][0], [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch["pixel_values"][0, 0], full["pixel_values"][0, 0])
