"""CLI: import-hf -> export-hf reproduces a tiny Llava; generate prints text (trained tokenizer)."""

import os

import numpy as np
import pytest
import torch  # noqa: F401  (test-only dependency: dev extra)
import transformers
from safetensors.numpy import load_file

from mathjax_vl.cli.main import main
from mathjax_vl.hf.tiny import make_tiny_llava

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]


def _train_tokenizer(path: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = ["What is the area of the triangle?", "The answer is 12.", "x + y = 7"] * 20
    tok.train_from_iterator(corpus, trainer)
    tok.save(os.path.join(path, "tokenizer.json"))
    return tok


@pytest.fixture(scope="module")
def llava_with_tokenizer(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("llava_tok"))
    tok = _train_tokenizer(d)
    vocab = tok.get_vocab_size()
    make_tiny_llava(d, "siglip", vocab_size=vocab + 4, image_token_id=tok.token_to_id("<image>"))
    return d


def test_import_then_export_reproduces_tensors(llava_with_tokenizer, tmp_path, capsys):
    src = llava_with_tokenizer
    ckpt, out = str(tmp_path / "ckpt"), str(tmp_path / "hf")
    assert main(["import-hf", src, ckpt]) == 0
    assert os.path.exists(os.path.join(ckpt, "mathjax_vl_model.json"))
    assert os.path.exists(os.path.join(ckpt, "tokenizer.json"))
    assert main(["export-hf", ckpt, out]) == 0
    a = load_file(os.path.join(src, "model.safetensors"))
    b = load_file(os.path.join(out, "model.safetensors"))
    assert sorted(a) == sorted(b)
    assert all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert os.path.exists(os.path.join(out, "tokenizer.json"))
    _, info = transformers.LlavaForConditionalGeneration.from_pretrained(
        out, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    # --dtype casts on export; transformers loads the bfloat16 dir without key warnings
    out16 = str(tmp_path / "hf16")
    assert main(["export-hf", ckpt, out16, "--dtype", "bfloat16"]) == 0
    m16, info = transformers.LlavaForConditionalGeneration.from_pretrained(
        out16, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert str(next(m16.parameters()).dtype) == "torch.bfloat16"
    assert main(["export-hf", ckpt, out16]) == 2  # refuses a non-empty output dir
    # bad input: unsupported dir -> exit 2 with the reason on stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"architectures": ["BertModel"], "model_type": "bert"}')
    capsys.readouterr()
    assert main(["import-hf", str(bad), str(tmp_path / "x")]) == 2
    assert "BertModel" in capsys.readouterr().err


def test_generate_prints_text(llava_with_tokenizer, tmp_path, capsys):
    from PIL import Image

    png = str(tmp_path / "fig.png")
    rng = np.random.RandomState(0)
    Image.fromarray(rng.randint(0, 255, (20, 30, 3)).astype(np.uint8)).save(png)
    capsys.readouterr()
    args = ["generate", "--model", llava_with_tokenizer, "--prompt", "What is x?"]
    sampling = ["--temperature", "0.8", "--top-p", "0.9", "--seed", "1"]
    code = main([*args, "--image", png, "--max-new-tokens", "6", *sampling])
    out = capsys.readouterr().out
    assert code == 0
    assert out.strip(), "generate printed nothing"
    # bad input: a missing image file -> exit 2, the message names the file
    assert main([*args, "--image", str(tmp_path / "nope.png")]) == 2
    assert "nope.png" in capsys.readouterr().err
