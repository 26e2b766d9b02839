"""Batched KV-cache generation for evaluation (benchmarks) and the codify loop.

    handle = load_model("path/to/hf_or_run", tokenizer_dir)          # mathjax_vl.eval.loading
    engine = GenerationEngine(handle, GenerationConfig(max_new_tokens=512, batch_size=16))
    texts = engine.generate_problems(problems)                        # one string per problem

Prompts are built exactly as training builds them (mathjax_vl.data): one user turn holding the
question, images as `<image>` placeholders (placed before the question when it has none,
Math-PUMA's convention), rendered with the tokenizer's chat template (else ChatML with its default
system prompt; `system_prompt` overrides it), each placeholder expanded to the tower's
image_seq_length tokens. So a model is evaluated on the prompt format it was trained on, and an
HF-exported model sees the same ids under `transformers`.

Batching: requests are sorted by prompt length (longest first, so memory runs out in the first
batch, not the last), cut into batches of `batch_size`, LEFT-padded (every row's last prompt token
sits in the same cache slot, so one decode step serves the whole batch) to a multiple of
`length_bucket`, and the batch axis and image count are padded to fixed sizes, so a whole benchmark
compiles a handful of shapes. Positions follow HF generate (`cumsum(mask) - 1`), so greedy output
equals `transformers`' token for token.

Decoding is mathjax_vl.decoding's (through decoding.generate_vlm for a VLM): the VLM embeds the
prompt with image features scattered in, the decoder prefills its KV cache from those embeddings,
then a jitted `lax.while_loop` of one-token steps runs until every row has produced a stop token
or `max_new_tokens` are done. Greedy by default (deterministic); with `temperature > 0`, nucleus
sampling (top-p) from a key seeded per batch (`seed`, batch index).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence

import numpy as np

from mathjax_vl.data.records import IMAGE_PLACEHOLDER, EvalProblem, with_leading_placeholders
from mathjax_vl.eval.loading import ModelHandle

log = logging.getLogger(__name__)

# Default stop strings (those the tokenizer knows are used): ChatML's end of turn and Qwen2's eos.
DEFAULT_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """Every knob of evaluation generation.

    Attributes:
      max_new_tokens: generated tokens per request at most (the stop token included).
      batch_size: requests per batch (the last batch is padded with dummy rows).
      temperature: 0 = greedy (deterministic); > 0 samples from softmax(logits / temperature).
      top_p: nucleus sampling mass (used only when temperature > 0).
      seed: sampling seed (each batch folds in its index).
      system_prompt: None keeps the chat template's default (Qwen2: "You are a helpful
        assistant."); a string adds a system turn with it.
      stop_tokens: tokens that end a response, as strings (each a single token of the
        tokenizer) or ids; None = DEFAULT_STOP_TOKENS the tokenizer has plus its eos token.
      length_bucket: prompt lengths are padded up to a multiple of this (fewer compilations).
      chat_template: overrides the tokenizer's template (None: its own, else ChatML).
    """

    max_new_tokens: int = 512
    batch_size: int = 8
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    system_prompt: str | None = None
    stop_tokens: tuple[str | int, ...] | None = None
    length_bucket: int = 64
    chat_template: str | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.length_bucket < 1:
            raise ValueError(
                "max_new_tokens, batch_size and length_bucket must be >= 1, got "
                f"{self.max_new_tokens}, {self.batch_size}, {self.length_bucket}"
            )
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(
                f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}"
            )


@dataclasses.dataclass(frozen=True)
class Request:
    """One prompt: the user text (placeholders allowed) and its encoded images, in order."""

    text: str
    images: tuple[bytes, ...] = ()
    name: str = ""  # for error messages (problem id / file name)


def problem_request(problem: EvalProblem) -> Request:
    name = f"problem {problem.problem_id!r}" + (
        f" version {problem.version!r}" if problem.version else ""
    )
    return Request(problem.question, tuple(problem.images), name)


@dataclasses.dataclass(frozen=True)
class Generation:
    """A decoded response and its token ids (stop token excluded) and why it ended."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: str  # "stop" | "length"


def _round_up(n: int, multiple: int) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def _next_pow2(n: int) -> int:
    return 1 if n <= 1 else 2 ** math.ceil(math.log2(n))


class GenerationEngine:
    """Prompt building, length-sorted batching and jitted KV-cache decoding for one model."""

    def __init__(self, handle: ModelHandle, config: GenerationConfig = GenerationConfig()):
        from mathjax_vl.data import chat_template
        from mathjax_vl.data.tokenization import load_tokenizer

        self.handle = handle
        self.config = config
        self.tokenizer = load_tokenizer(handle.tokenizer_dir)
        self.template = chat_template.template_for(self.tokenizer, config.chat_template)
        from mathjax_vl.eval.sharded import GenerationMesh

        # The mesh the handle was restored onto (`load_model(mesh=...)`), else one device.
        self.mesh = handle.mesh or GenerationMesh.create(None)
        self.params = self.mesh.place(handle.config, handle.params)
        if config.batch_size % self.mesh.batch_multiple:
            log.warning(
                "batch_size %d is not a multiple of the mesh's batch split %d: the batch is "
                "replicated instead of split",
                config.batch_size,
                self.mesh.batch_multiple,
            )
        self.stop_ids = self._stop_ids()
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.stop_ids[0]
        from mathjax_vl.decoding import SamplingConfig

        self.sampling = SamplingConfig(
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            stop_tokens=self.stop_ids,
            pad_token=self.pad_id,
        )
        self.image_token_id: int | None = None
        if handle.is_vlm:
            self.image_token_id = handle.config.image_token_id
            ids = self.tokenizer.encode(IMAGE_PLACEHOLDER, add_special_tokens=False)
            if ids != [self.image_token_id]:
                raise ValueError(
                    f"tokenizer {handle.tokenizer_dir} encodes {IMAGE_PLACEHOLDER!r} to {ids}, but "
                    f"model {handle.source} expects the single image token id "
                    f"{self.image_token_id}"
                )

    # ------------------------------------------------------------------------------- prompts
    def _stop_ids(self) -> tuple[int, ...]:
        tok = self.tokenizer
        vocab = tok.get_vocab()
        if self.config.stop_tokens is None:
            names = [t for t in DEFAULT_STOP_TOKENS if t in vocab]
            if tok.eos_token and tok.eos_token not in names:
                names.append(tok.eos_token)
        else:
            names = list(self.config.stop_tokens)
        ids = []
        for name in names:
            if isinstance(name, int):  # a token id given directly
                if not 0 <= name < len(tok):
                    raise ValueError(f"stop token id {name} is outside the vocabulary ({len(tok)})")
                ids.append(name)
                continue
            encoded = tok.encode(name, add_special_tokens=False)
            if len(encoded) != 1:
                raise ValueError(
                    f"stop token {name!r} is not a single token of {self.handle.tokenizer_dir} "
                    f"(encodes to {encoded})"
                )
            ids.append(int(encoded[0]))
        if not ids:
            raise ValueError(
                f"no stop token: tokenizer {self.handle.tokenizer_dir} has none of "
                f"{DEFAULT_STOP_TOKENS} and no eos token; set GenerationConfig.stop_tokens"
            )
        ids = tuple(dict.fromkeys(ids))
        return ids

    def messages(self, request: Request) -> list[dict[str, str]]:
        content = with_leading_placeholders(request.text, len(request.images))
        messages = []
        if self.config.system_prompt is not None:
            messages.append({"role": "system", "content": self.config.system_prompt})
        messages.append({"role": "user", "content": content})
        return messages

    def prompt_ids(self, request: Request) -> np.ndarray:
        """Template-rendered prompt ids [T] with every image placeholder expanded."""
        from mathjax_vl.data import chat_template

        n_images = len(request.images)
        if n_images and not self.handle.is_vlm:
            raise ValueError(
                f"{request.name or 'request'} has {n_images} image(s) but model "
                f"{self.handle.source} is a text-only decoder"
            )
        found = request.text.count(IMAGE_PLACEHOLDER)
        if found not in (0, n_images):
            raise ValueError(
                f"{request.name or 'request'}: question has {found} {IMAGE_PLACEHOLDER!r} "
                f"placeholder(s) for {n_images} image(s)"
            )
        text = chat_template.render(
            self.tokenizer, self.messages(request), self.template, add_generation_prompt=True
        )
        ids = np.asarray(self.tokenizer.encode(text, add_special_tokens=False), np.int32)
        if self.handle.is_vlm:
            is_image = ids == self.image_token_id
            if int(is_image.sum()) != n_images:
                raise ValueError(
                    f"{request.name or 'request'}: the rendered prompt holds {int(is_image.sum())} "
                    f"image tokens for {n_images} image(s) (does the system prompt or template "
                    f"contain {IMAGE_PLACEHOLDER!r}?)"
                )
            repeats = np.where(is_image, self.handle.config.image_seq_length, 1)
            ids = np.repeat(ids, repeats)
        return ids

    def pixel_values(self, request: Request) -> list[np.ndarray]:
        from mathjax_vl.data.image_processing import process_image

        return [
            process_image(img, self.handle.image_processing, source=request.name, index=i)
            for i, img in enumerate(request.images)
        ]

    # ---------------------------------------------------------------------------- generation
    def generate_problems(self, problems: Sequence[EvalProblem], progress: bool = False):
        return [g.text for g in self.generate([problem_request(p) for p in problems], progress)]

    def generate(
        self,
        requests: Sequence[Request],
        progress: bool = False,
        on_batch: Callable[[list[int], list[Generation]], None] | None = None,
    ) -> list[Generation]:
        """One Generation per request, in request order. `on_batch(rows, generations)` is called
        after each batch with the request positions it held (resumable runs save them)."""
        prompts = [self.prompt_ids(r) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: (-len(prompts[i]), i))
        results: list[Generation | None] = [None] * len(requests)
        bs = self.config.batch_size
        batches = [order[s : s + bs] for s in range(0, len(order), bs)]
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(requests), desc="generate", unit="req")
        # One image count for every batch that has images: fewer shapes to compile.
        per_batch = [sum(len(requests[i].images) for i in rows) for rows in batches]
        most = max(per_batch, default=0)
        num_images = _next_pow2(most) if most else 0
        for batch_index, rows in enumerate(batches):
            outputs = self._run_batch(
                [prompts[i] for i in rows], [requests[i] for i in rows], batch_index, num_images
            )
            for i, out in zip(rows, outputs):
                results[i] = out
            if on_batch is not None:
                on_batch(list(rows), outputs)
            if bar is not None:
                bar.update(len(rows))
        if bar is not None:
            bar.close()
        return results  # type: ignore[return-value]

    def _run_batch(
        self,
        prompts: list[np.ndarray],
        requests: list[Request],
        batch_index: int,
        num_images: int,
    ) -> list[Generation]:
        import jax

        cfg = self.config
        b = cfg.batch_size
        length = _round_up(max(len(p) for p in prompts), cfg.length_bucket)
        ids = np.full((b, length), self.pad_id, np.int32)
        mask = np.zeros((b, length), np.int32)
        for row, prompt in enumerate(prompts):  # left padding
            ids[row, length - len(prompt) :] = prompt
            mask[row, length - len(prompt) :] = 1
        mask[len(prompts) :, -1] = 1  # dummy rows: one pad token, never decoded
        pixels = None
        if self.handle.is_vlm and num_images:
            # Every batch of a call gets the same image count, an image-free batch dummy zeros
            # (the tower runs on them, nothing is scattered): one compiled shape, not two.
            p = self.handle.image_processing
            pixels = np.zeros((num_images, p.height, p.width, 3), np.float32)
            images = [px for r in requests for px in self.pixel_values(r)]
            if images:
                pixels[: len(images)] = np.stack(images)
                from mathjax_vl.models.vlm import check_image_tokens

                check_image_tokens(ids, len(images), self.handle.config)
        rng = jax.random.fold_in(jax.random.key(cfg.seed), batch_index)
        if self.handle.is_vlm:
            from mathjax_vl.decoding import generate_vlm

            out = generate_vlm(
                self.handle.config,
                self.params,
                ids,
                mask,
                pixels,
                self.sampling,
                rng,
                layout=self.mesh.layout,
            )
        else:
            from mathjax_vl.decoding import generate
            from mathjax_vl.models import registry

            model = registry.build(self.handle.config)
            out = generate(
                model, self.params, ids, mask, sampling=self.sampling, rng=rng,
                layout=self.mesh.layout,
            )  # fmt: skip
        tokens = np.asarray(out.tokens)[: len(prompts)]
        return [self._decode(row) for row in tokens]

    def _decode(self, row: np.ndarray) -> Generation:
        stops = np.isin(row, self.stop_ids)
        if stops.any():
            end, reason = int(np.argmax(stops)), "stop"
        else:
            end, reason = len(row), "length"
        token_ids = tuple(int(t) for t in row[:end])
        text = self.tokenizer.decode(list(token_ids), skip_special_tokens=True)
        return Generation(text=text, token_ids=token_ids, finish_reason=reason)


def codify_generator(engine: GenerationEngine):
    """The `generate(list[png]) -> list[str]` callable datagen.codify wants, from an engine (the
    CLI's `codify` and the demo's image-to-code stage share it)."""
    from mathjax_vl.datagen.codify import PYTHON_PROMPT

    def generate(images):
        requests = [Request(f"{IMAGE_PLACEHOLDER}\n{PYTHON_PROMPT}", (png,)) for png in images]
        return [g.text for g in engine.generate(requests)]

    return generate
