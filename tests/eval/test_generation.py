"""The evaluation generation engine against transformers' generate, token for token."""

import dataclasses
import importlib.util
import io
import pathlib
import sys

import numpy as np
import pytest

from mathjax_vl.data.records import EvalProblem
from mathjax_vl.eval.generation import GenerationConfig, GenerationEngine, problem_request
from mathjax_vl.eval.loading import ModelLoadError, load_model


def _load_assets():
    """tests/eval/_tiny_assets.py, one module object per process (its model cache is shared)."""
    if "_tiny_assets" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "_tiny_assets", pathlib.Path(__file__).with_name("_tiny_assets.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["_tiny_assets"] = module
        spec.loader.exec_module(module)
    return sys.modules["_tiny_assets"]


assets = _load_assets()

MAX_NEW = 10


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen_models")
    llava_dir, llava = assets.shared_llava()
    qwen_dir, qwen = assets.make_qwen2(root, llava_dir)  # the llava dir holds the tokenizer
    return {"llava": (llava_dir, llava), "qwen2": (qwen_dir, qwen)}


def _problem(pid, question, images=(), version="vision_dominant"):
    return EvalProblem(
        problem_id=pid,
        version=version,
        question=question,
        answer="1",
        answer_type="integer",
        images=tuple(images),
    )


def _hf_inputs(model_dir, requests, image_seq_length=None):
    """Prompt ids and pixels built by transformers alone: the tokenizer's own chat template
    (apply_chat_template), then a LlavaProcessor with SigLIP's image processor (16 px, bicubic,
    1/255, mean = std = 0.5) expanding each <image> (Math-PUMA: one per image before the
    question when it has none). Returns (list of id arrays, [N, 3, H, W] float32 or None)."""
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    texts = []
    for r in requests:
        content = r.text
        if r.images and "<image>" not in content:
            content = "<image>" * len(r.images) + "\n" + content
        messages = [{"role": "user", "content": content}]
        texts.append(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    if image_seq_length is None:  # a text-only decoder
        return [np.asarray(tok(t, add_special_tokens=False)["input_ids"]) for t in texts], None
    image_processor = transformers.SiglipImageProcessor(
        do_resize=True,
        size={"height": 16, "width": 16},
        resample=3,  # PIL.Image.BICUBIC
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    processor = transformers.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=4,
        vision_feature_select_strategy="default",  # SigLIP: 16 patches, the first one dropped
        image_token="<image>",
    )
    ids, pixels = [], []
    for text, r in zip(texts, requests):
        from PIL import Image

        images = [Image.open(io.BytesIO(b)).convert("RGB") for b in r.images] or None
        out = processor(text=text, images=images, return_tensors="np")
        ids.append(np.asarray(out["input_ids"][0]))
        if images:
            pixels.append(np.asarray(out["pixel_values"], np.float32))
    assert all(int((i == 3).sum()) % image_seq_length == 0 for i in ids)
    return ids, (np.concatenate(pixels) if pixels else None)


def _hf_generate(model, engine, requests, eos_ids, model_dir=None):
    """transformers' greedy generate, one left-padded batch, on prompts and pixels built by
    transformers' own chat template and processor (`_hf_inputs`) when `model_dir` is given,
    which must equal the engine's; else on the engine's own prompts."""
    import torch

    prompts = [engine.prompt_ids(r) for r in requests]
    pixel_override = None
    if model_dir is not None:
        seq = engine.handle.config.image_seq_length if engine.handle.kind == "vlm" else None
        hf_prompts, pixel_override = _hf_inputs(model_dir, requests, seq)
        for r, ours, theirs in zip(requests, prompts, hf_prompts):
            np.testing.assert_array_equal(ours, theirs, err_msg=r.name)
        if pixel_override is not None:
            ours_px = np.stack([px for r in requests for px in engine.pixel_values(r)])
            np.testing.assert_allclose(ours_px.transpose(0, 3, 1, 2), pixel_override, atol=1e-6)
        prompts = hf_prompts
    length = max(len(p) for p in prompts)
    ids = np.zeros((len(prompts), length), np.int64)
    mask = np.zeros_like(ids)
    for row, p in enumerate(prompts):
        ids[row, length - len(p) :] = p
        mask[row, length - len(p) :] = 1
    kwargs = {}
    if pixel_override is not None:
        kwargs["pixel_values"] = torch.tensor(pixel_override)
    elif model_dir is None:
        pixels = [px for r in requests for px in engine.pixel_values(r)]
        if pixels:
            kwargs["pixel_values"] = torch.tensor(np.stack(pixels)).permute(0, 3, 1, 2)
    with torch.no_grad():
        out = model.generate(
            torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            max_new_tokens=MAX_NEW,
            do_sample=False,
            eos_token_id=list(eos_ids),
            pad_token_id=engine.pad_id,
            **kwargs,
        )
    rows = []
    for new in out[:, length:].tolist():
        cut = next((i for i, t in enumerate(new) if t in eos_ids), len(new))
        rows.append(tuple(new[:cut]))
    return rows


@pytest.fixture(scope="module")
def vlm_run(models):
    """One engine over mixed problems: 3 batches of 2 (sorted by length), one compiled shape."""
    handle = load_model(models["llava"][0])
    tail = " Find the angle x of triangle ABC."
    problems = [
        _problem(
            "two",
            "Triangle <image> and <image>: find the angle x." + tail,
            [assets.random_png(0), assets.random_png(1)],
        ),
        _problem("lead", "What is 3 + 9?" + tail, [assets.random_png(2)]),  # image placed first
        _problem(
            "text", "Triangle ABC has side 5 cm. Find the angle x of it. " * 3, version="text_only"
        ),
        _problem("short", "x?" + tail, [assets.random_png(3, size=(40, 12))]),
        _problem("long", "What is 12 + 36? " * 2 + tail, [assets.random_png(4)]),
    ]
    # Sorted by length the batches are [two, text], [long, lead], [short]: 2 images at most, all
    # prompts in (64, 128] tokens, so every batch (and the CLI tests) share one compiled shape.
    engine = GenerationEngine(handle, GenerationConfig(max_new_tokens=MAX_NEW, batch_size=2))
    requests = [problem_request(p) for p in problems]
    return engine, problems, requests, engine.generate(requests)


def test_vlm_greedy_batches_equal_transformers(models, vlm_run):
    engine, problems, requests, ours = vlm_run
    assert engine.handle.kind == "vlm" and engine.handle.config.image_seq_length == 15
    # Prompts: the leading image placeholder is added; the 2-image prompt holds 2 * 15 tokens.
    assert int((engine.prompt_ids(requests[1]) == 3).sum()) == 15
    assert int((engine.prompt_ids(requests[0]) == 3).sum()) == 30
    llava_dir, llava = models["llava"]
    reference = _hf_generate(llava, engine, requests, engine.stop_ids, model_dir=llava_dir)
    assert [g.token_ids for g in ours] == reference
    assert len({g.token_ids for g in ours}) >= 3  # rows really differ (not a degenerate model)
    assert all(g.finish_reason in ("stop", "length") for g in ours)
    # The text is the tokenizer's decoding of the ids.
    assert ours[2].text == engine.tokenizer.decode(
        list(ours[2].token_ids), skip_special_tokens=True
    )
    # generate_problems returns the texts in problem order whatever the batching.
    assert engine.generate_problems(problems[::-1]) == [g.text for g in ours[::-1]]


def test_stop_token_ends_rows_like_transformers(models, vlm_run):
    engine, _, requests, ours = vlm_run
    stop_id = ours[1].token_ids[3]  # row 1 must stop before its 4th token
    stopping = GenerationEngine(
        engine.handle, dataclasses.replace(engine.config, stop_tokens=(stop_id,))
    )
    stopped = stopping.generate(requests)
    assert stopped[1].finish_reason == "stop" and len(stopped[1].token_ids) <= 3
    assert [g.token_ids for g in stopped] == _hf_generate(
        models["llava"][1], stopping, requests, (stop_id,)
    )


@pytest.mark.slow
def test_top_p_near_zero_is_greedy(vlm_run):
    engine, _, requests, ours = vlm_run
    nucleus = GenerationEngine(
        engine.handle, dataclasses.replace(engine.config, temperature=1.0, top_p=1e-6)
    )
    assert [g.token_ids for g in nucleus.generate(requests)] == [g.token_ids for g in ours]


def test_text_only_decoder_equals_transformers(models):
    qwen_dir, qwen = models["qwen2"]
    handle = load_model(qwen_dir)
    assert handle.kind == "decoder"
    requests = [
        problem_request(_problem("a", "What is 3 + 9?", version="text_only")),
        problem_request(_problem("b", "Triangle ABC has side 5 cm. Find the angle x.")),
        problem_request(_problem("c", "x?")),
    ]
    engine = GenerationEngine(handle, GenerationConfig(max_new_tokens=MAX_NEW, batch_size=3))
    ours = engine.generate(requests)
    reference = _hf_generate(qwen, engine, requests, engine.stop_ids, model_dir=qwen_dir)
    assert [g.token_ids for g in ours] == reference
    with pytest.raises(ValueError, match=r"problem 'img'.*1 image.*text-only decoder"):
        engine.generate([problem_request(_problem("img", "x?", [assets.random_png(0)]))])


def test_load_errors_name_the_path(tmp_path, models):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="not a model directory"):
        load_model(str(tmp_path))
    with pytest.raises(ModelLoadError, match=r"no tokenizer\.json in"):
        load_model(models["llava"][0], tokenizer_dir=str(tmp_path))


def test_import_hf_checkpoint_generates_like_the_hf_dir(tmp_path, vlm_run):
    """`mathjax-vl import-hf` output (registry checkpoint) loads to the same model."""
    from mathjax_vl.cli.main import main

    engine, _, requests, ours = vlm_run
    ckpt = tmp_path / "ckpt"
    assert main(["import-hf", engine.handle.source, str(ckpt)]) == 0
    handle = load_model(str(ckpt))
    assert handle.kind == "vlm" and handle.config == engine.handle.config
    assert handle.tokenizer_dir == str(ckpt)
    again = GenerationEngine(handle, engine.config).generate(requests)
    assert [g.token_ids for g in again] == [g.token_ids for g in ours]


def test_training_checkpoint_loads_with_its_stage_config(tmp_path, models):
    """A trainer checkpoint (trainable + frozen params, no model config) + the stage's config."""
    import types

    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from flax import traverse_util

    from mathjax_vl.models.vlm import VLM
    from mathjax_vl.train.checkpointing import Checkpointer
    from mathjax_vl.train.config_loader import load_config
    from mathjax_vl.train.tasks.vlm_common import vlm_config

    tok_dir = models["llava"][0]
    from mathjax_vl.data.tokenization import load_tokenizer

    vocab = len(load_tokenizer(tok_dir))
    config_file = str(pathlib.Path(__file__).parents[2] / "configs" / "tiny_multimodal_sft.py")
    overrides = [f"--config.model.decoder.vocab_size={vocab}", "--config.model.image_token_id=3"]
    cfg = vlm_config(load_config(config_file, overrides).model)
    pixels = jnp.zeros((1, 16, 16, 3), jnp.float32)  # as the multimodal tasks initialise
    shapes = jax.eval_shape(
        lambda: nn.meta.unbox(
            VLM(cfg).init(jax.random.key(7), jnp.zeros((1, 4), jnp.int32), pixel_values=pixels)
        )
    )["params"]
    rng = np.random.default_rng(7)  # random values: every tensor distinguishable
    params = jax.tree.map(lambda a: rng.standard_normal(a.shape).astype(a.dtype), shapes)
    frozen = {"vision_tower": params["vision_tower"]}
    trainable = {k: v for k, v in params.items() if k != "vision_tower"}
    state = types.SimpleNamespace(
        step=jnp.int32(3), trainable=trainable, frozen=frozen, opt_state={"count": jnp.int32(3)}
    )
    ckpt = Checkpointer(tmp_path / "run" / "checkpoints", interval=1, keep=1, async_save=False)
    ckpt.save(3, state, {"position": 0}, {"step": 3})
    ckpt.close()

    with pytest.raises(ModelLoadError, match="--train-config"):
        load_model(str(tmp_path / "run"), tok_dir)
    handle = load_model(
        str(tmp_path / "run"), tok_dir, train_config=config_file, config_overrides=overrides
    )
    assert handle.kind == "vlm" and handle.config == cfg
    flat = traverse_util.flatten_dict(handle.params, sep="/")
    expected = traverse_util.flatten_dict(params, sep="/")
    assert set(flat) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(np.asarray(flat[key]), value, err_msg=key)
