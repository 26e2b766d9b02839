"""Evaluation generation speed: compile time of the first batch shape and steady-state throughput
of GenerationEngine per batch size, on a random small VLM (SigLIP 224 px / 14 px patches + a
4-layer Qwen2), greedy.

    python benchmarks/eval_generation.py [--problems 16] [--new-tokens 32] [--batch-sizes 1,8]
    python benchmarks/eval_generation.py --vs-hf [--batch 8 --prompt-len 128 --new-tokens 64]

Prints one row per batch size: first call (compile + run), second call over the same problems
(compiled), generated tokens/s and problems/s of the second call. Nothing is downloaded: the
tokenizer is trained on the prompts, the weights are random (so every row runs to
--new-tokens unless a stop token comes up by chance; the count of generated tokens is reported).

--vs-hf: our prefill + decode loop against transformers' `generate` (PyTorch) on the same random
Qwen2 (--hidden, --layers; imported from the HF checkpoint transformers saved), the same batch of
left-padded prompts of mixed lengths (up to --prompt-len) and --new-tokens greedy tokens with no
stop token (both generate exactly --new-tokens). Ours: the compiled prefill and decode loop timed
separately (mesh path on one device, second call). HF: generate with max_new_tokens=1 is its
prefill; (generate(N) - generate(1)) / (N - 1) its decode time per token. Prints both, the
ratios, and how many greedy tokens agree.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def vs_hf(args) -> None:
    import jax
    import numpy as np
    import torch
    import transformers

    from mathjax_vl.decoding import SamplingConfig, cache_shape, decode_fn, prefill_fn
    from mathjax_vl.eval.sharded import GenerationMesh
    from mathjax_vl.hf import registry as hf_registry
    from mathjax_vl.models import registry

    tmp = tempfile.mkdtemp()
    hf_cfg = transformers.Qwen2Config(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=4 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 64),
        num_key_value_heads=max(1, args.hidden // 128),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    hf = transformers.Qwen2ForCausalLM(hf_cfg).eval()
    hf.save_pretrained(tmp)
    _, cfg, params = hf_registry.load_hf(tmp)
    b, t, n = args.batch, args.prompt_len, args.new_tokens
    rng = np.random.default_rng(0)
    lengths = [t - (i * t) // (2 * b) for i in range(b)]  # t down to ~t/2: mixed, left-padded
    ids = np.zeros((b, t), np.int32)
    mask = np.zeros((b, t), np.int32)
    for row, length in enumerate(lengths):
        ids[row, t - length :] = rng.integers(1, args.vocab, size=length)
        mask[row, t - length :] = 1

    gm = GenerationMesh.create(None)
    placed = gm.place(cfg, params)
    model = registry.build(cfg)
    sampling = SamplingConfig(max_new_tokens=n)
    layout = gm.layout
    key = jax.random.key(0)
    with layout.context():
        pre = prefill_fn(model, layout, placed, ids.shape, False, t + n)
        loop = decode_fn(model, sampling, layout, placed, cache_shape(cfg, b, t + n))

        def ours_prefill():
            out = pre(placed, ids, mask)
            jax.block_until_ready(out)
            return out

        def ours_all():
            logits, cache, pos = pre(placed, ids, mask)
            return jax.block_until_ready(loop(placed, logits, cache, pos, key))

        t0 = time.perf_counter()
        ours_tokens = np.asarray(ours_all().tokens)  # compiles both
        compile_s = time.perf_counter() - t0
        ours_pre = _best(ours_prefill, args.repeats)
        ours_total = _best(ours_all, args.repeats)
    torch.set_num_threads(args.torch_threads or torch.get_num_threads())
    ti, tm = torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)

    def hf_gen(k):
        with torch.no_grad():
            return hf.generate(
                input_ids=ti,
                attention_mask=tm,
                max_new_tokens=k,
                min_new_tokens=k,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )

    hf_tokens = hf_gen(n)[:, t:].numpy()
    hf_pre = _best(lambda: hf_gen(1), args.repeats)
    hf_total = _best(lambda: hf_gen(n), args.repeats)
    ours_step = (ours_total - ours_pre) / (n - 1)
    hf_step = (hf_total - hf_pre) / (n - 1)
    agree = float(np.mean(ours_tokens == hf_tokens))
    print(
        f"jax {jax.__version__} ({jax.devices()[0].device_kind}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"Qwen2 random: hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}; batch {b}, "
        f"prompts {min(lengths)}-{t} tokens (left-padded to {t}), {n} new tokens, greedy"
    )
    print("| | prefill ms | decode ms / token | generated tokens / s | end to end s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, pre_s, step_s, total in (
        ("mathjax_vl", ours_pre, ours_step, ours_total),
        ("HF generate", hf_pre, hf_step, hf_total),
    ):
        print(
            f"| {name} | {1e3 * pre_s:.1f} | {1e3 * step_s:.2f} | {b * n / total:.0f} | "
            f"{total:.3f} |"
        )
    print(
        f"ratio HF / ours: prefill {hf_pre / ours_pre:.2f}x, decode per token "
        f"{hf_step / ours_step:.2f}x, end to end {hf_total / ours_total:.2f}x; first compile "
        f"{compile_s:.1f} s (not in the figures); greedy tokens agreeing {100 * agree:.1f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--vs-hf", action="store_true", help="compare with HF generate")
    parser.add_argument("--batch", type=int, default=8, help="--vs-hf batch")
    parser.add_argument("--prompt-len", type=int, default=128, help="--vs-hf longest prompt")
    parser.add_argument("--hidden", type=int, default=256, help="--vs-hf model width")
    parser.add_argument("--layers", type=int, default=4, help="--vs-hf decoder layers")
    parser.add_argument("--vocab", type=int, default=2048, help="--vs-hf vocabulary")
    parser.add_argument("--repeats", type=int, default=3, help="--vs-hf timed repeats (best)")
    parser.add_argument("--torch-threads", type=int, default=0, help="--vs-hf (0: torch's)")
    args = parser.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if args.vs_hf:
        vs_hf(args)
        return
    import flax.linen as nn
    import jax
    import numpy as np
    from PIL import Image

    from mathjax_vl.data.image_processing import ImageProcessingConfig
    from mathjax_vl.data.records import EvalProblem
    from mathjax_vl.data.tokenizer_train import train_tokenizer
    from mathjax_vl.eval.generation import GenerationConfig, GenerationEngine, problem_request
    from mathjax_vl.eval.loading import ModelHandle
    from mathjax_vl.models.projectors import ProjectorConfig
    from mathjax_vl.models.qwen2 import Qwen2Config
    from mathjax_vl.models.siglip import SiglipVisionConfig
    from mathjax_vl.models.vlm import VLM, VLMConfig

    questions = [
        f"In triangle ABC, AB = {i + 3} cm and angle B = {20 + 5 * i} degrees. "
        + "Find the length of BC. " * (1 + i % 4)
        for i in range(args.problems)
    ]
    tmp = tempfile.mkdtemp()
    tok_dir = train_tokenizer(questions * 20, 1000, os.path.join(tmp, "tok"))
    from transformers import PreTrainedTokenizerFast

    vocab = len(PreTrainedTokenizerFast.from_pretrained(tok_dir))
    vision = SiglipVisionConfig(
        hidden_size=192,
        intermediate_size=768,
        num_layers=4,
        num_heads=3,
        image_size=224,
        patch_size=14,
    )
    text = Qwen2Config(
        vocab_size=vocab,
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    cfg = VLMConfig(
        vision=vision,
        text=text,
        projector=ProjectorConfig(kind="mlp", input_dim=192, output_dim=256),
        image_token_id=3,
    )
    params = jax.jit(lambda: VLM(cfg).init(jax.random.key(0), jax.numpy.zeros((1, 4), "int32")))()
    params = jax.tree.map(np.asarray, nn.meta.unbox(params["params"]))
    handle = ModelHandle(
        "vlm", cfg, params, tok_dir, ImageProcessingConfig.siglip(224), source="random"
    )
    rng = np.random.default_rng(0)

    def png() -> bytes:
        buffer = io.BytesIO()
        Image.fromarray((rng.random((300, 300, 3)) * 255).astype(np.uint8)).save(buffer, "PNG")
        return buffer.getvalue()

    problems = [
        EvalProblem(
            problem_id=str(i),
            version="",
            question=q,
            answer="1",
            answer_type="integer",
            images=(png(),),
        )
        for i, q in enumerate(questions)
    ]
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}; load average "
        f"{os.getloadavg()[0]:.1f}; image tokens per problem {cfg.image_seq_length}"
    )
    print("| batch | first call s | compiled call s | generated tokens | tokens/s | problems/s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        engine = GenerationEngine(
            handle, GenerationConfig(max_new_tokens=args.new_tokens, batch_size=bs)
        )
        t0 = time.perf_counter()
        engine.generate_problems(problems)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        outs = engine.generate([problem_request(p) for p in problems])
        second = time.perf_counter() - t0
        tokens = sum(len(o.token_ids) + (o.finish_reason == "stop") for o in outs)
        print(
            f"| {bs} | {first:.1f} | {second:.2f} | {tokens} | {tokens / second:.0f} | "
            f"{len(problems) / second:.2f} |"
        )


if __name__ == "__main__":
    main()
