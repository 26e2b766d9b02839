"""Conversation -> (input_ids, labels) with image placeholders expanded to the tower's token count.

Steps, each chosen to match what ``transformers`` does at inference:
1. the record's ``<image>`` placeholders become the tokenizer's image token (if it differs);
2. the chat template renders the text (mathjax_vl.data.chat_template) and the assistant content
   spans are located;
3. the whole text is tokenized at once (``add_special_tokens=False``, as apply_chat_template does),
   so ids equal ``apply_chat_template(tokenize=True)``; a token is trained when it starts inside an
   assistant content span, and the end-of-turn token right after each span is trained too (the
   model must learn to stop); every other label is -100;
4. each image token is repeated ``image_token_count`` times (labels -100): the model scatters one
   image's features into each run of image tokens, in order;
5. a sample longer than ``max_length`` is rejected (RecordError "too_long", then the bad-record
   policy decides) or truncated; truncation never cuts into an image's run: the cut moves to
   before the run and that image is dropped, and a sample left without any trained token is
   rejected.

Labels follow the HF convention used by the trainer (mathjax_vl.train.tasks.common): aligned with
input_ids, ``labels[t] = input_ids[t]`` where trained, the loss at position t predicts
``labels[t + 1]``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from mathjax_vl.data import chat_template as templates
from mathjax_vl.data.records import IMAGE_PLACEHOLDER, RecordError
from mathjax_vl.errors import UserError
from mathjax_vl.losses.constants import IGNORE_INDEX


@dataclasses.dataclass(frozen=True)
class TokenizationConfig:
    """Everything that decides token ids and labels.

    Attributes:
      max_length: longest sample after image expansion.
      image_token: the tokenizer's image token (one special token); records' ``<image>``
        placeholders are mapped to it.
      image_token_count: tokens per image after expansion (728 for Math-PUMA's SigLIP-so400m/14 at
        384 px with the first token dropped; the vision tower's count in general).
      too_long: ``"reject"`` raises RecordError("too_long") for the bad-record policy to handle;
        ``"truncate"`` cuts at max_length without splitting an image.
      chat_template: template override; None uses the tokenizer's own, else ChatML.
      end_of_turn_token: trained after each assistant turn; None trains none. Default ChatML's.
    """

    max_length: int = 2048
    image_token: str = IMAGE_PLACEHOLDER
    image_token_count: int = 728
    too_long: Literal["reject", "truncate"] = "reject"
    chat_template: str | None = None
    end_of_turn_token: str | None = templates.CHATML_END_OF_TURN

    def __post_init__(self) -> None:
        if self.too_long not in ("reject", "truncate"):
            raise ValueError(f"too_long must be 'reject' or 'truncate', got {self.too_long!r}")
        if self.image_token_count < 1 or self.max_length < 2:
            raise ValueError(
                f"need image_token_count >= 1 and max_length >= 2, got {self.image_token_count}, "
                f"{self.max_length}"
            )


@dataclasses.dataclass(frozen=True)
class TokenizedSample:
    """One tokenized conversation. Arrays are 1-D int32 of equal length L <= max_length."""

    input_ids: np.ndarray
    labels: np.ndarray
    num_images: int  # images whose tokens are present (truncation may drop trailing ones)

    @property
    def response_positions(self) -> np.ndarray:
        """Logit positions t whose next token is trained (t = j - 1 for every trained j)."""
        return np.flatnonzero(self.labels[1:] != IGNORE_INDEX).astype(np.int32)

    @property
    def response_tokens(self) -> np.ndarray:
        return self.labels[self.labels != IGNORE_INDEX]


# Grain reads examples from several threads; the first transformers import and the tokenizer
# construction are not thread-safe, so they happen under one lock, once per directory.
_LOAD_LOCK = threading.Lock()


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")  # what `tokenizer train` writes


class TokenizerDirError(UserError, FileNotFoundError):
    """A tokenizer directory that is missing or lacks the files a fast tokenizer needs."""


def check_tokenizer_dir(path: str) -> None:
    """Raise TokenizerDirError naming the dir and the expected files unless `path` is a local
    directory holding tokenizer.json (HF's fast-tokenizer file; tokenizer_config.json, with the
    special tokens and chat template, is read when present)."""
    expected = f"a local directory with {TOKENIZER_FILES[0]} (and {TOKENIZER_FILES[1]})"
    if not path:
        raise TokenizerDirError(f"no tokenizer directory given; expected {expected}")
    if not os.path.isdir(path):
        what = "is a file, not a directory" if os.path.exists(path) else "does not exist"
        raise TokenizerDirError(f"tokenizer directory {path} {what}; expected {expected}")
    if not os.path.isfile(os.path.join(path, TOKENIZER_FILES[0])):
        found = sorted(os.listdir(path))[:8]
        raise TokenizerDirError(
            f"tokenizer directory {path} has no {TOKENIZER_FILES[0]} (found {found}); expected "
            f"{expected}, e.g. from `mathjax-vl tokenizer train` or an HF model's tokenizer files"
        )


def load_tokenizer(path: str) -> Any:
    """A fast HF tokenizer from a local directory (never downloads); cached per process."""
    check_tokenizer_dir(str(path))
    with _LOAD_LOCK:
        return _load_tokenizer(path)


@functools.lru_cache(maxsize=8)
def _load_tokenizer(path: str) -> Any:
    # PreTrainedTokenizerFast, not AutoTokenizer: the ids come from tokenizer.json either way,
    # and AutoTokenizer imports torch (seconds per Grain worker start).
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"{path}: a fast tokenizer (tokenizer.json) is required for offsets")
    return tok


class ConversationTokenizer:
    """Tokenizes conversations (list of {role, content}) per a :class:`TokenizationConfig`.

    Picklable (Grain workers): only the tokenizer directory and the config are pickled.
    """

    def __init__(self, tokenizer_dir: str, config: TokenizationConfig) -> None:
        self.tokenizer_dir = str(tokenizer_dir)
        self.config = config
        self._setup()

    def _setup(self) -> None:
        tok = load_tokenizer(self.tokenizer_dir)
        self.tokenizer = tok
        self.template = templates.template_for(tok, self.config.chat_template)
        self.image_token_id = self._single_token_id(self.config.image_token, "image_token")
        self.end_of_turn_id = (
            self._single_token_id(self.config.end_of_turn_token, "end_of_turn_token")
            if self.config.end_of_turn_token
            else None
        )
        self.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else 0

    def _single_token_id(self, token: str, name: str) -> int:
        ids = self.tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(
                f"{self.tokenizer_dir}: {name} {token!r} must be ONE token of the tokenizer, "
                f"it encodes to {ids}; add it as a special token"
            )
        return int(ids[0])

    def __getstate__(self) -> dict[str, Any]:
        return {"tokenizer_dir": self.tokenizer_dir, "config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup()

    # ------------------------------------------------------------------ tokenization

    def tokenize(
        self,
        messages: Sequence[dict[str, str]],
        num_images: int,
        *,
        source: str = "<memory>",
        index: int | str = "?",
        image_tiles: Sequence[int] | None = None,
    ) -> TokenizedSample:
        """Tokenizes a conversation whose text holds ``num_images`` image placeholders.

        image_tiles: tiles per image (dynamic resolution, InternVL); image k then expands to
        ``image_tiles[k] * image_token_count`` tokens. None: one tile each."""
        cfg = self.config
        messages = [
            {"role": m["role"], "content": m["content"].replace(IMAGE_PLACEHOLDER, cfg.image_token)}
            for m in messages
        ]
        for i, m in enumerate(messages):
            if m["role"] == "assistant" and cfg.image_token in m["content"]:
                raise RecordError(
                    source, index, "bad_value", f"assistant turn {i} contains an image placeholder"
                )
        rendered = templates.render_with_spans(self.tokenizer, messages, self.template)
        enc = self.tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
        ids = np.asarray(enc["input_ids"], np.int64)
        starts = np.asarray([s for s, _ in enc["offset_mapping"]], np.int64)
        trained = np.zeros(len(ids), bool)
        for lo, hi in rendered.assistant_spans:
            in_span = (starts >= lo) & (starts < hi)
            trained |= in_span
            if self.end_of_turn_id is not None:
                after = np.flatnonzero(starts >= hi)
                if len(after) and ids[after[0]] == self.end_of_turn_id:
                    trained[after[0]] = True
        if not trained.any():
            raise RecordError(source, index, "empty_response", "no assistant tokens to train on")
        n_found = int((ids == self.image_token_id).sum())
        if n_found != num_images:
            raise RecordError(
                source,
                index,
                "image_count_mismatch",
                f"expected {num_images} image tokens after templating, found {n_found}",
            )
        labels = np.where(trained, ids, IGNORE_INDEX)
        runs = self._run_lengths(num_images, image_tiles)
        ids, labels = self._expand_images(ids, labels, runs)
        return self._fit_length(ids, labels, runs, source, index)

    def tokenize_prompt(
        self,
        messages: Sequence[dict[str, str]],
        num_images: int,
        image_tiles: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Generation prompt ids (template + assistant header), images expanded; for eval."""
        cfg = self.config
        messages = [
            {"role": m["role"], "content": m["content"].replace(IMAGE_PLACEHOLDER, cfg.image_token)}
            for m in messages
        ]
        text = templates.render(self.tokenizer, messages, self.template, True)
        ids = np.asarray(self.tokenizer.encode(text, add_special_tokens=False), np.int64)
        if int((ids == self.image_token_id).sum()) != num_images:
            raise ValueError(f"prompt has the wrong number of image tokens (want {num_images})")
        runs = self._run_lengths(num_images, image_tiles)
        ids, _ = self._expand_images(ids, np.full_like(ids, IGNORE_INDEX), runs)
        return ids.astype(np.int32)

    def _run_lengths(self, num_images: int, image_tiles: Sequence[int] | None) -> np.ndarray:
        """Image-token run length of each image, in order: tiles x image_token_count."""
        tiles = np.ones(num_images, np.int64) if image_tiles is None else np.asarray(image_tiles)
        if len(tiles) != num_images or (tiles < 1).any():
            raise ValueError(
                f"image_tiles {list(tiles)} must give >= 1 tile for {num_images} images"
            )
        return tiles.astype(np.int64) * self.config.image_token_count

    def _expand_images(
        self, ids: np.ndarray, labels: np.ndarray, runs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        repeats = np.ones(len(ids), np.int64)
        repeats[ids == self.image_token_id] = runs  # the k-th image token -> its run
        return np.repeat(ids, repeats), np.repeat(labels, repeats)

    def _fit_length(
        self, ids: np.ndarray, labels: np.ndarray, runs: np.ndarray, source: str, index: int | str
    ) -> TokenizedSample:
        cfg = self.config
        n = len(ids)
        if n <= cfg.max_length:
            return TokenizedSample(ids.astype(np.int32), labels.astype(np.int32), len(runs))
        if cfg.too_long == "reject":
            raise RecordError(
                source,
                index,
                "too_long",
                f"{n} tokens after image expansion > max_length {cfg.max_length}",
            )
        cut = cfg.max_length
        # The image tokens before the cut say which run it reaches into (runs end at the
        # cumulative run lengths): move the cut back to the start of that run.
        image_tokens_before = int((ids[:cut] == self.image_token_id).sum())
        ends = np.cumsum(runs)
        kept_images = int(np.searchsorted(ends, image_tokens_before, side="right"))
        inside = image_tokens_before - (int(ends[kept_images - 1]) if kept_images else 0)
        cut -= inside
        ids, labels = ids[:cut], labels[:cut]
        if not (labels != IGNORE_INDEX).any():
            raise RecordError(
                source,
                index,
                "too_long",
                f"{n} tokens > max_length {cfg.max_length} and truncation leaves no response token",
            )
        return TokenizedSample(ids.astype(np.int32), labels.astype(np.int32), kept_images)
