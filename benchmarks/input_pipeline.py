"""Input pipeline throughput: examples/s and tokens/s per objective and number of Grain workers.

Pipelines measured (Math-PUMA shapes): multimodal SFT at 384 px with 728 image tokens per image,
PUMA pairs (both sides, 728 tokens per image), packed text SFT at 2048 tokens. Records are
synthetic figure-like PNGs (lines, circles and text on white, ~600 x 500 px, as real math figures)
with short problems and solutions, written to a TFDS ArrayRecord dataset and read back through
``storage.open_source`` (the training path). The tokenizer is trained on the records' text.

Timing starts after ``--warmup`` batches, so worker start-up is excluded; tokens are the non-pad
tokens of a batch (image tokens included; both sides for pairs). The window is long (40 batches)
because buffered examples (read prefetch: 4 batches per process) make short windows optimistic.
Main-process CPU ms per example is load-independent: with 0 workers the whole per-example cost,
with workers the serial part left in the main process.

    python benchmarks/input_pipeline.py                      # all pipelines, 0/1/2 workers
    python benchmarks/input_pipeline.py --pipelines mm --workers 0,2 --batches 5
    python benchmarks/input_pipeline.py --vs-train-step   # vs benchmarks/train_throughput.py

``--vs-train-step`` measures, in one run, the JAX train step of train_throughput.py at its
full configuration (batch 4 x 512 tokens, one 224 px image = 196 image tokens per row, ~9.6M
parameters) and the multimodal SFT pipeline at the same batch, length, image size and image-token
count, and prints the ratio of examples per second (the issue asks for >= 3x).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def figure_png(rng: np.random.Generator, w: int = 600, h: int = 500) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 10))):
        x0, y0, x1, y1 = rng.integers(0, min(w, h), size=4).tolist()
        d.line((x0, y0, x1, y1), fill="black", width=2)
    for _ in range(int(rng.integers(1, 4))):
        x, y, r = int(rng.integers(60, w - 60)), int(rng.integers(60, h - 60)), 50
        d.ellipse((x - r, y - r, x + r, y + r), outline="blue", width=2)
    for k in range(4):
        d.text(tuple(rng.integers(10, min(w, h) - 20, size=2).tolist()), "ABCD"[k], fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_records(kind: str, n: int, seed: int = 0) -> list:
    from mathjax_vl.data import records as R

    rng = np.random.default_rng(seed)
    problem = (
        "In the figure, AB is a diameter of circle O and angle BAC is {a} degrees. "
        "Find angle ABC. Give the reasoning step by step."
    )
    solution = (
        "Since AB is a diameter, angle ACB is 90 degrees. The angles of triangle ABC sum to 180 "
        "degrees, so angle ABC = 180 - 90 - {a} = {b} degrees. The answer is {b}. " * 3
    )
    out = []
    for i in range(n):
        a = int(rng.integers(10, 80))
        q, s = problem.format(a=a), solution.format(a=a, b=90 - a)
        if kind == "text":
            turns = (R.Turn("user", q), R.Turn("assistant", s * int(rng.integers(1, 4))))
            out.append(R.TextConversation(turns=turns, id=str(i)))
        elif kind == "mm":
            turns = (R.Turn("user", "<image>\n" + q), R.Turn("assistant", s))
            out.append(R.MultimodalConversation(turns=turns, images=(figure_png(rng),), id=str(i)))
        else:
            out.append(
                R.PumaPair(
                    text_rich=R.PumaSide("<image>\n" + q, (figure_png(rng),)),
                    vision_rich=R.PumaSide(
                        "<image>\nSolve the problem in the figure.", (figure_png(rng),)
                    ),
                    solution=s,
                    id=str(i),
                )
            )
    return out


def measure(pipeline, warmup: int, batches: int) -> tuple[float, float, float, float]:
    """(examples/s, tokens/s, seconds, main-process CPU ms per example) after `warmup` batches.

    The CPU figure is load-independent: with 0 workers it is the whole per-example cost (all
    threads of this process), with workers it is the serial part left in the main process
    (receiving, accounting, collating), which bounds what any number of workers can reach.
    """
    it = iter(pipeline)
    for _ in range(warmup):
        next(it)
    examples = tokens = 0
    c0 = time.process_time()
    t0 = time.perf_counter()
    for _ in range(batches):
        b = next(it)
        if "weak_attention_mask" in b:
            examples += b["weak_attention_mask"].shape[0]
            tokens += int(b["weak_attention_mask"].sum() + b["strong_attention_mask"].sum())
        else:
            examples += b["attention_mask"].shape[0]
            tokens += int(b["attention_mask"].sum())
    dt = time.perf_counter() - t0
    cpu_ms = 1000 * (time.process_time() - c0) / examples
    if hasattr(it, "close"):
        it.close()
    return examples / dt, tokens / dt, dt, cpu_ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipelines", default="mm,pairs,text")
    p.add_argument("--workers", default="0,1,2")
    p.add_argument("--batch-size", type=int, default=8)
    # Many batches: the read threads and workers buffer ~4 batches ahead, which a short window
    # would count as free throughput (bias about buffered / measured examples).
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--records", type=int, default=64)
    p.add_argument("--image-size", type=int, default=384)
    p.add_argument("--image-tokens", type=int, default=728)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--read-threads", type=int, default=2)
    p.add_argument("--vs-train-step", action="store_true")
    args = p.parse_args()
    if args.vs_train_step:
        vs_train_step(args)
        return

    from mathjax_vl.data import storage
    from mathjax_vl.data.image_processing import ImageProcessingConfig
    from mathjax_vl.data.pipelines import PipelineConfig
    from mathjax_vl.data.tokenization import TokenizationConfig
    from mathjax_vl.data.tokenizer_train import record_texts, train_tokenizer
    from mathjax_vl.train.tasks import build_pipeline

    tmp = tempfile.mkdtemp(prefix="bench_input_")
    objective = {"mm": "multimodal_sft", "pairs": "puma_pair", "text": "text_sft"}
    rows = []
    tok_dir = None
    for name in args.pipelines.split(","):
        recs = make_records(name, args.records)
        if tok_dir is None:
            texts = [t for r in make_records("mm", 32, seed=1) for t in record_texts(r)]
            tok_dir = train_tokenizer(texts, 2000, os.path.join(tmp, "tok"))
        storage.write_dataset(recs, os.path.join(tmp, name), name)
        source = storage.open_source(os.path.join(tmp, name), "train")
        for workers in [int(w) for w in args.workers.split(",")]:
            cfg = PipelineConfig(
                objective=objective[name],
                batch_size=args.batch_size,
                num_workers=workers,
                read_threads=args.read_threads,
                tokenization=TokenizationConfig(
                    max_length=args.max_length, image_token_count=args.image_tokens
                ),
                image=ImageProcessingConfig.siglip(args.image_size),
                max_images_per_example=1,
            )
            ex_s, tok_s, dt, cpu_ms = measure(
                build_pipeline(source, cfg, tok_dir), args.warmup, args.batches
            )
            rows.append((name, workers, ex_s, tok_s, cpu_ms))
            print(
                f"{name:6s} workers={workers}  {ex_s:8.1f} examples/s  {tok_s:10.0f} tokens/s"
                f"  main-process CPU {cpu_ms:6.1f} ms/example  ({args.batches} batches in "
                f"{dt:.1f}s)",
                flush=True,
            )

    print(
        f"\ncpu cores: {os.cpu_count()}  batch {args.batch_size}  image {args.image_size}px "
        f"x {args.image_tokens} tokens  max_length {args.max_length}  read_threads "
        f"{args.read_threads}"
    )
    print(f"load average at the end: {os.getloadavg()}")
    print("| pipeline | workers | examples/s | tokens/s | main-process CPU ms/example |")
    print("| --- | --- | --- | --- | --- |")
    for name, workers, ex_s, tok_s, cpu_ms in rows:
        print(f"| {name} | {workers} | {ex_s:.1f} | {tok_s:.0f} | {cpu_ms:.1f} |")


def vs_train_step(args: argparse.Namespace) -> None:
    """Pipeline examples/s vs the train step's consumption at the training benchmark's config."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import train_throughput as tt

    from mathjax_vl.data import storage
    from mathjax_vl.data.image_processing import ImageProcessingConfig
    from mathjax_vl.data.pipelines import PipelineConfig
    from mathjax_vl.data.tokenization import TokenizationConfig
    from mathjax_vl.data.tokenizer_train import record_texts, train_tokenizer
    from mathjax_vl.train.tasks import build_pipeline

    s = tt.FULL
    step = tt.bench_ours(s, tt.make_batch(s))
    step_ex_s = s["batch"] / step["step_s"]
    print(
        f"train step (JAX, {step['params']:,} params, batch {s['batch']} x {s['seq']} tokens, "
        f"{s['image']} px): {step['step_s']:.3f} s/step = {step_ex_s:.2f} examples/s, "
        f"{s['batch'] * s['seq'] / step['step_s']:.0f} tokens/s",
        flush=True,
    )
    tmp = tempfile.mkdtemp(prefix="bench_input_vs_")
    recs = make_records("mm", args.records)
    texts = [t for r in make_records("mm", 32, seed=1) for t in record_texts(r)]
    tok_dir = train_tokenizer(texts, 2000, os.path.join(tmp, "tok"))
    storage.write_dataset(recs, os.path.join(tmp, "mm"), "mm")
    source = storage.open_source(os.path.join(tmp, "mm"), "train")
    print("| pipeline workers | pipeline examples/s | train step examples/s | ratio |")
    print("| --- | --- | --- | --- |")
    for workers in [int(w) for w in args.workers.split(",")]:
        cfg = PipelineConfig(
            objective="multimodal_sft",
            batch_size=s["batch"],
            num_workers=workers,
            read_threads=args.read_threads,
            tokenization=TokenizationConfig(
                max_length=s["seq"], image_token_count=tt.image_tokens(s), too_long="truncate"
            ),
            image=ImageProcessingConfig.siglip(s["image"]),
        )
        ex_s, _, _, _ = measure(build_pipeline(source, cfg, tok_dir), args.warmup, args.batches)
        print(f"| {workers} | {ex_s:.1f} | {step_ex_s:.2f} | {ex_s / step_ex_s:.1f}x |", flush=True)
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
