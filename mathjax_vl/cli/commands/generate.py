"""`mathjax-vl generate`: one prompt (+ optional images) through a model, printing the answer.

    mathjax-vl generate --model DIR_OR_CKPT --prompt "What is x?" [--image fig.png ...] \
        [--max-new-tokens 256] [--temperature 0.7 --top-p 0.9 --seed 0] [--tokenizer DIR] [--raw]

--model: an HF directory (Llava or Qwen2) or a checkpoint written by `import-hf`. The tokenizer
(tokenizer.json, read with `tokenizers`) comes from --tokenizer or the model dir. The prompt is
wrapped in ChatML (system "You are a helpful assistant.", the image placeholders before the text,
as Math-PUMA does) unless --raw; each image becomes image_seq_length image tokens. Images are
preprocessed like the tower's HF processor (mathjax_vl.data.tower_images). Generation stops
at <|im_end|> / <|endoftext|> (when the tokenizer has them) or after --max-new-tokens.
--mesh shards the model over this host's devices (training's fsdp / tensor rules, read shard by
shard from the checkpoint); --dtype bfloat16 runs it in bf16.
Exit status 0 on success, 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
import sys

SYSTEM_PROMPT = "You are a helpful assistant."
STOP_STRINGS = ("<|im_end|>", "<|endoftext|>")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate text for a prompt and optional images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="HF dir or mathjax-vl checkpoint dir")
    p.add_argument("--prompt", required=True)
    p.add_argument("--image", action="append", default=[], help="image file (repeatable)")
    p.add_argument("--tokenizer", default=None, help="dir with tokenizer.json (default: model)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--system", default=SYSTEM_PROMPT, help="system prompt (ChatML)")
    p.add_argument("--raw", action="store_true", help="no chat template: the prompt as is")
    p.add_argument("--mesh", default=None, help="shard over local devices, e.g. fsdp=4,tensor=2")
    p.add_argument("--dtype", default="float32", help="params + compute dtype (bfloat16)")
    p.set_defaults(func=run)


def load_tokenizer(path: str):
    from tokenizers import Tokenizer

    file = os.path.join(path, "tokenizer.json")
    if not os.path.exists(file):
        raise ValueError(f"no tokenizer.json in {path}; pass --tokenizer DIR")
    return Tokenizer.from_file(file)


def build_prompt_ids(
    tokenizer,
    prompt: str,
    num_images: int,
    image_token_id: int | None,
    image_seq_length: int,
    system: str | None,
    raw: bool,
) -> list[int]:
    """Token ids of the (ChatML-wrapped) prompt with image placeholders expanded."""
    encode = lambda s: tokenizer.encode(s, add_special_tokens=False).ids
    if raw:
        head, tail = "", prompt
    else:
        head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
        head += "<|im_start|>user\n"
        tail = ("\n" if num_images else "") + prompt + "<|im_end|>\n<|im_start|>assistant\n"
    ids = encode(head) if head else []
    ids += [image_token_id] * (image_seq_length * num_images)
    return ids + encode(tail)


def run(args) -> int:
    import jax
    import numpy as np

    from mathjax_vl.decoding import SamplingConfig
    from mathjax_vl.hf import registry
    from mathjax_vl.hf.common import ConversionError

    try:
        from mathjax_vl.eval.loading import generator_kind
        from mathjax_vl.eval.sharded import GenerationMesh, with_compute_dtype
        from mathjax_vl.models import registry as model_registry

        kind, cfg, params, _ = registry.open_any(args.model)  # lazy: read shard by shard
        if generator_kind(kind) is None:
            raise ValueError(f"{args.model}: a {kind} model does not generate text")
        mesh = GenerationMesh.create(args.mesh)
        cfg = with_compute_dtype(cfg, args.dtype)
        params = mesh.place(cfg, params, args.dtype)
        vlm = model_registry.get(kind).role == "composite"
        if args.image and not vlm:
            raise ValueError(f"{args.model}: a text-only {kind} model cannot take --image")
        tokenizer = load_tokenizer(args.tokenizer or args.model)
        stop = tuple(i for i in (tokenizer.token_to_id(s) for s in STOP_STRINGS) if i is not None)
        sampling = SamplingConfig(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            stop_tokens=stop,
            pad_token=0,
        )
        if vlm:
            from mathjax_vl.data.tower_images import preprocess_image_tiles

            # a tiling tower (InternVL) gives several tiles per image, each one image's tokens
            pixels, tiles = preprocess_image_tiles(args.image or [], cfg.vision)
            pixels = pixels if args.image else None
            ids = build_prompt_ids(
                tokenizer,
                args.prompt,
                sum(tiles),
                cfg.image_token_id,
                cfg.image_seq_length,
                args.system,
                args.raw,
            )
        else:
            ids = build_prompt_ids(tokenizer, args.prompt, 0, None, 0, args.system, args.raw)
    except (ConversionError, ValueError, OSError) as e:
        print(f"generate: {e}", file=sys.stderr)
        return 2
    ids = np.asarray([ids], np.int32)
    rng = jax.random.PRNGKey(args.seed)
    if vlm:
        from mathjax_vl.decoding import generate_vlm

        out = generate_vlm(cfg, params, ids, None, pixels, sampling, rng, layout=mesh.layout)
    else:
        from mathjax_vl.decoding import generate

        model = model_registry.build(cfg)
        out = generate(model, params, ids, sampling=sampling, rng=rng, layout=mesh.layout)
    n = int(out.lengths[0])
    tokens = [int(t) for t in np.asarray(out.tokens[0, :n]) if int(t) not in stop]
    print(tokenizer.decode(tokens, skip_special_tokens=True))
    return 0
