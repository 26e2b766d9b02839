"""Template + masking parity with transformers' apply_chat_template and manual masking."""

import importlib.util
import pathlib

import numpy as np
import pytest

from mathjax_vl.data import chat_template
from mathjax_vl.data.records import RecordError
from mathjax_vl.data.tokenization import ConversationTokenizer, TokenizationConfig

_spec = importlib.util.spec_from_file_location(
    "_chat_reference", pathlib.Path(__file__).with_name("_chat_reference.py")
)
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)
CONVERSATION = ref.CONVERSATION
OWN_TEMPLATE = ref.OWN_TEMPLATE


@pytest.fixture(scope="module")
def tok_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("tok")
    from mathjax_vl.data.tokenizer_train import train_tokenizer

    return {
        "own": ref.make_tokenizer_dir(base / "own", True),
        "chatml": ref.make_tokenizer_dir(base / "chatml", False),
        # The project's own trainer (Qwen2 pre-tokenisation regex, ChatML template saved).
        "trained": train_tokenizer(ref.CORPUS, 600, base / "trained"),
    }


@pytest.mark.parametrize("which", ["own", "chatml", "trained"])
def test_matches_apply_chat_template_and_manual_masking(tok_dirs, which):
    cfg = TokenizationConfig(max_length=512, image_token_count=5)
    ct = ConversationTokenizer(tok_dirs[which], cfg)
    expected_template = OWN_TEMPLATE if which == "own" else chat_template.CHATML_TEMPLATE
    if which == "trained":  # whatever the trainer saved, read back from the directory
        expected_template = ref.AutoTokenizer.from_pretrained(tok_dirs[which]).chat_template
    assert ct.template == expected_template
    sample = ct.tokenize(CONVERSATION, num_images=2)
    ids, labels = ref.hf_reference(tok_dirs[which], CONVERSATION, expected_template, 5)
    np.testing.assert_array_equal(sample.input_ids, ids)
    np.testing.assert_array_equal(sample.labels, labels)
    assert sample.input_ids.dtype == np.int32
    assert (sample.input_ids == ct.image_token_id).sum() == 10
    # Decoding the trained tokens gives exactly the assistant contents, each closed by <|im_end|>.
    text = ct.tokenizer.decode(sample.response_tokens)
    assert text == "Angle ACB is 70 degrees.<|im_end|>The answer is 84.<|im_end|>"
    if which != "own":
        assert "You are a helpful assistant." in ct.tokenizer.decode(sample.input_ids)


def test_too_long_reject_and_truncate_never_split_images(tok_dirs):
    conv = [
        {"role": "user", "content": "Find x. <image>"},
        {"role": "assistant", "content": "The answer is 84. " * 3},
        {"role": "user", "content": "<image><image> And now?"},
        {"role": "assistant", "content": "The answer is 6."},
    ]
    full = ConversationTokenizer(tok_dirs["own"], TokenizationConfig(4096, image_token_count=7))
    whole = full.tokenize(conv, 3)
    image_id = full.image_token_id
    first_run_of_second_turn = int(np.flatnonzero(whole.input_ids == image_id)[7])
    for max_len in range(first_run_of_second_turn + 1, first_run_of_second_turn + 14):
        with pytest.raises(RecordError, match="too_long"):
            ConversationTokenizer(
                tok_dirs["own"], TokenizationConfig(max_len, image_token_count=7)
            ).tokenize(conv, 3, source="x.jsonl", index=4)
        cut = ConversationTokenizer(
            tok_dirs["own"], TokenizationConfig(max_len, image_token_count=7, too_long="truncate")
        ).tokenize(conv, 3)
        n_img_tokens = int((cut.input_ids == image_id).sum())
        assert n_img_tokens % 7 == 0 and cut.num_images == n_img_tokens // 7
        assert len(cut.input_ids) <= max_len
        np.testing.assert_array_equal(cut.input_ids, whole.input_ids[: len(cut.input_ids)])
    # Nothing trainable left -> too_long even when truncating.
    with pytest.raises(RecordError, match="no response token"):
        ConversationTokenizer(
            tok_dirs["own"], TokenizationConfig(12, image_token_count=7, too_long="truncate")
        ).tokenize(conv, 3)


def test_image_count_mismatch(tok_dirs):
    ct = ConversationTokenizer(tok_dirs["own"], TokenizationConfig(512, image_token_count=3))
    with pytest.raises(RecordError, match="image_count_mismatch"):
        ct.tokenize(CONVERSATION, num_images=1, source="f.json", index=9)


def test_prompt_for_generation(tok_dirs):
    ct = ConversationTokenizer(tok_dirs["chatml"], TokenizationConfig(512, image_token_count=4))
    ids = ct.tokenize_prompt(CONVERSATION[:1], 1)
    text = ct.tokenizer.decode(ids)
    assert text.endswith("<|im_start|>assistant\n")
    assert (ids == ct.image_token_id).sum() == 4


def test_non_append_only_template_fails(tok_dirs):
    bad = "{% for m in messages[-1:] %}{{ m['content'] }}{% endfor %}"
    ct = ConversationTokenizer(
        tok_dirs["own"], TokenizationConfig(512, image_token_count=3, chat_template=bad)
    )
    with pytest.raises(ValueError, match="append-only"):
        ct.tokenize(CONVERSATION, 2)


def test_template_read_from_directory_and_override(tok_dirs):
    """The project's tokenizer trainer saves ChatML where transformers finds it; a directory's
    own template is what ConversationTokenizer renders with, and the config override replaces it
    (ids and labels then follow apply_chat_template with the override, not the dir's own)."""
    hf = ref.AutoTokenizer.from_pretrained(tok_dirs["trained"])
    assert hf.chat_template == chat_template.CHATML_TEMPLATE
    cfg = TokenizationConfig(max_length=512, image_token_count=5)
    own = ConversationTokenizer(tok_dirs["own"], cfg)
    assert own.template == OWN_TEMPLATE != chat_template.CHATML_TEMPLATE
    forced_cfg = TokenizationConfig(
        max_length=512, image_token_count=5, chat_template=chat_template.CHATML_TEMPLATE
    )
    forced = ConversationTokenizer(tok_dirs["own"], forced_cfg)
    assert forced.template == chat_template.CHATML_TEMPLATE
    sample = forced.tokenize(CONVERSATION, num_images=2)
    ids, labels = ref.hf_reference(tok_dirs["own"], CONVERSATION, chat_template.CHATML_TEMPLATE, 5)
    np.testing.assert_array_equal(sample.input_ids, ids)
    np.testing.assert_array_equal(sample.labels, labels)
    own_ids = own.tokenize(CONVERSATION, num_images=2).input_ids
    assert len(own_ids) != len(ids) or not np.array_equal(own_ids, ids)
