"""Useful tokens per computed token, bucketed vs packed, at each recipe's paper settings, and the
CPU train-step time per useful token at a tiny model.

    python benchmarks/token_efficiency.py                       # generates 120 records per recipe
    python benchmarks/token_efficiency.py --data /tmp/te_data   # reuse `mathjax-vl datagen` output
    python benchmarks/token_efficiency.py --skip-step           # fractions only

Part 1 runs the real Grain pipelines (`mathjax_vl.data.pipelines`) over records from the
generators (`mathjax-vl datagen --recipe instruct | puma_pairs | image_code`), `--epochs`
shuffled passes, with both layouts, and divides non-padding tokens by computed token slots
(batch x seq_len, both sides for pairs). Bucketed rows are padded to the compiled seq_len, as
`train/pipeline_adapter.pad_to_spec` pads every batch for the one compiled step. The image-token
count per image is the setting's (pixels are processed at 16 px: they do not change lengths).
Token counts come from a byte-level BPE trained on the records' text (no Qwen2 tokenizer is
available offline; pass --tokenizer DIR for a real one).

Settings (seq_len, image tokens, image slots per packed row):
- Math-PUMA stage 3 (instruct, multimodal SFT): 2048, 728 (SigLIP-so400m 384 px), 2;
- Math-PUMA stage 2 (puma_pairs, both sides packed in lockstep, response slots 512): 2048, 728, 2;
- MAVIS instruction tuning (instruct): 2048, 576 (CLIP ViT-L/14 336 px), 3;
- MathCoder-VL image-to-code (image_code): 4096 with ONE 728-token SigLIP image: InternVL's
  dynamic tiles (MathCoder-VL's real image shape) do not exist in mathjax_vl yet, so this row is
  the nearest shape we have, not the paper's.

Part 2 times the jitted value-and-grad step of the tiny multimodal SFT task (tiny SigLIP + Qwen2,
15 image tokens, seq 256) on batches of 4 rows drawn from the same length distribution scaled
by 256 / 2048 (image runs stay 15 tokens), bucketed vs packed, alternating the two (median of
`--repeats`), and reports ms per 1000 useful tokens.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    recipe: str
    objective: str
    seq_len: int
    image_tokens: int
    packed_images: int
    response_len: int = 0
    note: str = ""


SETTINGS = (
    Setting("Math-PUMA stage 3", "instruct", "multimodal_sft", 2048, 728, 2),
    Setting("Math-PUMA stage 2 (pairs)", "puma_pairs", "puma_pair", 2048, 728, 2, 512),
    Setting("MAVIS instruct", "instruct", "multimodal_sft", 2048, 576, 3),
    Setting(
        "MathCoder-VL image-to-code",
        "image_code",
        "image_code",
        4096,
        728,
        5,
        note="one 728-token image; InternVL tiles not implemented",
    ),
)


def ensure_data(data: Path, n: int) -> None:
    from mathjax_vl.datagen import engine

    for recipe in sorted({s.recipe for s in SETTINGS}):
        if (data / recipe / "1.0.0").exists():
            continue
        cfg = engine.DatagenConfig(recipe=recipe, n=n, seed=0, workers=1, progress=False)
        engine.generate_dataset(cfg, str(data))


def corpus(data: Path) -> list[str]:
    from mathjax_vl.data import records as R
    from mathjax_vl.data import storage

    texts = []
    for recipe in sorted({s.recipe for s in SETTINGS}):
        src = storage.open_source(str(data / recipe / "1.0.0"), "train")
        for i in range(len(src)):
            rec = src[i]
            rec = R.record_from_dict(rec, recipe, i) if isinstance(rec, dict) else rec
            texts.extend(str(v) for v in _strings(rec))
    return texts


def _strings(rec) -> list[str]:
    out = []
    for f in dataclasses.fields(rec):
        v = getattr(rec, f.name)
        if isinstance(v, str):
            out.append(v)
        elif dataclasses.is_dataclass(v):
            out.extend(_strings(v))
        elif isinstance(v, tuple):
            for x in v:
                if dataclasses.is_dataclass(x):
                    out.extend(_strings(x))
    return out


def fraction(setting: Setting, layout: str, data: Path, tok: str, epochs: int, window: int):
    """(useful / computed tokens, examples per row, rows) over `epochs` passes, real pipeline."""
    from mathjax_vl.data import storage
    from mathjax_vl.data.bad_records import BadRecordConfig
    from mathjax_vl.data.image_processing import ImageProcessingConfig
    from mathjax_vl.data.pipelines import PipelineConfig
    from mathjax_vl.data.tokenization import TokenizationConfig
    from mathjax_vl.train.tasks import build_pipeline

    src = storage.open_source(str(data / setting.recipe / "1.0.0"), "train")
    cfg = PipelineConfig(
        objective=setting.objective,
        batch_size=8,
        num_epochs=epochs,
        drop_remainder=False,
        prefetch_batches=0,
        tokenization=TokenizationConfig(
            max_length=setting.seq_len, image_token_count=setting.image_tokens
        ),
        image=ImageProcessingConfig(height=16, width=16),
        bad_records=BadRecordConfig(policy="skip", max_skipped_fraction=0.05),
        length_buckets=(setting.seq_len,),
        response_buckets=(setting.response_len,) if setting.response_len else (),
        max_images_per_example=setting.packed_images if layout == "packing" else 1,
        layout=layout,
        packing_window=window,
    )
    useful = computed = rows = 0
    pipe = build_pipeline(src, cfg, tok)
    for batch in pipe:
        for p in ("weak_", "strong_") if setting.objective == "puma_pair" else ("",):
            useful += int(batch[p + "attention_mask"].sum())
            computed += batch[p + "input_ids"].shape[0] * setting.seq_len  # padded to seq_len
        rows += batch[next(k for k in batch if k.endswith("input_ids"))].shape[0]
    examples = pipe.tracker.seen - pipe.tracker.skipped
    return useful / computed, examples / rows, rows, pipe.tracker.skipped


def step_time(data: Path, tok: str, repeats: int) -> dict:
    """Tiny-model step time per useful token, bucketed vs packed (same examples' lengths)."""
    import jax
    import jax.numpy as jnp
    from flax import linen as nn

    from mathjax_vl.data import packing
    from mathjax_vl.data.tokenization import IGNORE_INDEX
    from mathjax_vl.train.config_loader import load_config
    from mathjax_vl.train.tasks import build_task

    # lengths of the stage-3 distribution: (tokens, images) per example, real pipeline
    s3 = SETTINGS[0]
    lens = _example_lengths(s3, data, tok)
    t, scale, b = 256, 256 / s3.seq_len, 4
    tasks = {}
    for layout in ("bucketed", "packing"):
        c = load_config(str(ROOT / "configs" / "tiny_multimodal_sft.py"))
        c.data.seq_len, c.data.layout = t, layout
        c.data.max_images = 2 if layout == "packing" else 1
        tasks[layout] = build_task(c)
    v = tasks["packing"].vlm_cfg
    rng = np.random.default_rng(0)
    examples = []
    for n_tok, n_img in lens:
        text = max(4, round((n_tok - n_img * s3.image_tokens) * scale))
        ids = rng.integers(1, 200, size=text).astype(np.int32)
        ids = np.concatenate([np.full(n_img * v.image_seq_length, v.image_token_id), ids])
        labels = np.where(np.arange(len(ids)) >= len(ids) - text // 2, ids, IGNORE_INDEX)
        pix = rng.standard_normal((n_img, 16, 16, 3)).astype(np.float32)
        examples.append(
            {
                "input_ids": ids.astype(np.int32),
                "labels": labels.astype(np.int32),
                "pixel_values": pix,
            }
        )

    def rows_for(layout):
        m = 2 if layout == "packing" else 1
        spec = packing.PackSpec(("",), t, m, (16, 16, 3), 0)
        if layout == "packing":
            sizes = [((len(e["input_ids"]), len(e["pixel_values"])),) for e in examples]
            groups = packing.first_fit_decreasing(sizes, spec)
        else:
            groups = [[i] for i in range(len(examples))]
        rows = [packing.build_row([examples[i] for i in g], spec) for g in groups]
        keys = tasks[layout].batch_spec(b)
        batches = []
        for i in range(0, len(rows) - b + 1, b):
            batches.append(
                {k: jnp.asarray(np.stack([r[k] for r in rows[i : i + b]])) for k in keys}
            )
        return batches

    out = {}
    batches = {layout: rows_for(layout) for layout in tasks}
    params = nn.unbox(jax.jit(tasks["packing"].init)(jax.random.key(0), batches["packing"][0]))
    fns = {
        layout: jax.jit(jax.value_and_grad(lambda p, bt, task=task: task.loss(p, bt, None)[0]))
        for layout, task in tasks.items()
    }
    for layout, fn in fns.items():
        jax.block_until_ready(fn(params, batches[layout][0]))
    times = {layout: [] for layout in fns}
    for r in range(repeats):
        for layout, fn in fns.items():
            bt = batches[layout][r % len(batches[layout])]
            t0 = time.perf_counter()
            jax.block_until_ready(fn(params, bt))
            times[layout].append(time.perf_counter() - t0)
    for layout in fns:
        useful = np.mean([float(bt["attention_mask"].sum()) for bt in batches[layout]])
        med = float(np.median(times[layout]))
        out[layout] = {
            "step_ms": 1e3 * med,
            "useful_tokens_per_step": useful,
            "ms_per_1k_useful_tokens": 1e6 * med / useful,
        }
    return out


def _example_lengths(setting: Setting, data: Path, tok: str) -> list[tuple[int, int]]:
    from mathjax_vl.data import storage
    from mathjax_vl.data.image_processing import ImageProcessingConfig
    from mathjax_vl.data.pipelines import ExampleProcessor, PipelineConfig
    from mathjax_vl.data.tokenization import TokenizationConfig

    src = storage.open_source(str(data / setting.recipe / "1.0.0"), "train")
    cfg = PipelineConfig(
        objective=setting.objective,
        batch_size=1,
        tokenization=TokenizationConfig(
            max_length=setting.seq_len, image_token_count=setting.image_tokens
        ),
        image=ImageProcessingConfig(height=16, width=16),
    )
    proc = ExampleProcessor(src, cfg, tok)
    out = []
    for i in range(len(src)):
        ex = proc.map_with_index(i, i)
        if "input_ids" in ex:
            out.append((len(ex["input_ids"]), len(ex["pixel_values"])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="", help="datagen output root (default: generate)")
    ap.add_argument("--n", type=int, default=120, help="records per recipe when generating")
    ap.add_argument("--tokenizer", default="", help="HF tokenizer dir (default: train a BPE)")
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--skip-step", action="store_true")
    ap.add_argument("--json", default="", help="also write the figures to this file")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="token_eff_"))
    data = Path(args.data) if args.data else tmp / "data"
    ensure_data(data, args.n)
    tok = args.tokenizer
    if not tok:
        from mathjax_vl.data.tokenizer_train import train_tokenizer

        tok = train_tokenizer(corpus(data), args.vocab, tmp / "tok")
    results = {"settings": []}
    print(f"{'setting':32s} {'seq':>5s} {'img tok':>7s} {'bucketed':>9s} {'packed':>7s} "
          f"{'ex/row':>6s} {'rows b/p':>10s}  note")  # fmt: skip
    for s in SETTINGS:
        fb, _, rows_b, skip_b = fraction(s, "bucketed", data, tok, args.epochs, args.window)
        fp, per_row, rows_p, skip_p = fraction(s, "packing", data, tok, args.epochs, args.window)
        row = dict(dataclasses.asdict(s), bucketed=fb, packed=fp, examples_per_row=per_row,
                   rows_bucketed=rows_b, rows_packed=rows_p, too_long=[skip_b, skip_p])  # fmt: skip
        results["settings"].append(row)
        print(f"{s.name:32s} {s.seq_len:5d} {s.image_tokens:7d} {fb:9.3f} {fp:7.3f} "
              f"{per_row:6.2f} {rows_b:4d}/{rows_p:<5d}  {s.note}")  # fmt: skip
    lens = _example_lengths(SETTINGS[0], data, tok)
    arr = np.array([n for n, _ in lens])
    results["stage3_lengths"] = {
        "mean": float(arr.mean()), "p5": float(np.percentile(arr, 5)),
        "p95": float(np.percentile(arr, 95)), "min": int(arr.min()), "max": int(arr.max()),
    }  # fmt: skip
    print("stage-3 example length (tokens): " + json.dumps(results["stage3_lengths"]))
    if not args.skip_step:
        st = step_time(data, tok, args.repeats)
        results["step_time"] = st
        for layout, r in st.items():
            print(f"tiny step ({layout:8s}): {r['step_ms']:.1f} ms, "
                  f"{r['useful_tokens_per_step']:.0f} useful tokens/step, "
                  f"{r['ms_per_1k_useful_tokens']:.2f} ms per 1k useful tokens")  # fmt: skip
        ratio = st["bucketed"]["ms_per_1k_useful_tokens"] / st["packing"]["ms_per_1k_useful_tokens"]
        print(f"packed step time per useful token: {ratio:.2f}x better")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
