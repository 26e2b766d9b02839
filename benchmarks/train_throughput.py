"""Train-step throughput: our jitted JAX step vs Hugging Face PyTorch LlavaForConditionalGeneration
(SigLIP + Qwen2) at the same configuration, batch and image size, in the same run on this CPU.

    python benchmarks/train_throughput.py            # REFERENCE.md section 5 config (~9.6M params)
    python benchmarks/train_throughput.py --quick    # tiny shapes, seconds
    python benchmarks/train_throughput.py --profile  # + where each side's step time goes
    python benchmarks/train_throughput.py --ablate   # our step with this config's speed knobs off

Prints tokens/s and step time of both, model FLOPs per token (analytic, fwd + bwd = 3x forward),
the float32 matmul rate measured in the same run (JAX and torch) and each side's MFU against it.
Both sides: float32, AdamW, same batch (B rows x T tokens with one 224 px image each). The two
sides' timed steps alternate (ours, HF, ours, HF, ...) so background load hits both alike; the
median (and best) step time of each is reported. Run it with nothing else on the machine (or
under `nice -n -19` with `kernel.sched_autogroup_enabled=0`): both sides use every core.

Our side runs the trainer's default config except `scan_unroll` = the layer count in both towers:
the parameters stay stacked (the default layout), but XLA unrolls the 4-layer scans, which
compiles in seconds and skips the loops' stacked-residual copies and dynamic slices; deep models
keep a rolled scan for compile time (benchmarks/compile_time.py).

Tokens are counted as USEFUL tokens (non-padding) on both sides. By default the rows are real
examples of varying length (one image, then 24-56 text tokens: about the Math-PUMA stage-3 ratio
of example length to seq_len, 0.43), and three steps race, interleaved:
  - ours, bucketed: one example per row, right-padded to T (the batches HF users run);
  - ours, packed (data.layout="packing"): the same examples packed, up to 2 per row with their
    images (2 image slots per row), segment ids + restarting positions;
  - HF PyTorch Llava on the bucketed batches (it has no multimodal packing).
`--full-rows` restores the older race in which every row is one full-length example.

--profile traces two more steps of each side (jax.profiler; torch.profiler) and prints the step
time split into matmul kernels and everything else (elementwise, copies, reductions, loops).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Shapes shared by both frameworks (REFERENCE.md section 5: ~9.6M params, 4 x 512 tokens, 224 px).
FULL = dict(
    vocab=16384, hidden=256, inter=768, layers=4, heads=4, kv_heads=2,
    v_hidden=192, v_inter=768, v_layers=4, v_heads=4, image=224, patch=16,
    batch=4, seq=512, steps=6, warmup=2,
)  # fmt: skip
QUICK = dict(
    vocab=512, hidden=64, inter=128, layers=2, heads=4, kv_heads=2,
    v_hidden=64, v_inter=128, v_layers=2, v_heads=4, image=64, patch=16,
    batch=2, seq=64, steps=3, warmup=1,
)  # fmt: skip


def image_tokens(s: dict) -> int:
    return (s["image"] // s["patch"]) ** 2  # SigLIP, "full" select strategy (no class token)


def make_batch(s: dict, seed: int = 0) -> dict:
    """One image per row: [image tokens][text]; loss on everything after the image."""
    import numpy as np

    rng = np.random.default_rng(seed)
    b, t, n = s["batch"], s["seq"], image_tokens(s)
    image_id = s["vocab"] - 1
    ids = rng.integers(0, s["vocab"] - 1, size=(b, t), dtype=np.int32)
    ids[:, :n] = image_id
    labels = np.where(np.arange(t)[None, :] >= n, ids, -100).astype(np.int32)
    pix = rng.standard_normal((b, s["image"], s["image"], 3)).astype(np.float32)
    return {"input_ids": ids, "labels": labels, "pixel_values": pix, "image_id": image_id}


def make_examples(s: dict, n: int, seed: int = 0) -> list[dict]:
    """Variable-length examples: [one image's tokens][prompt][response], loss on the response."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_img, image_id = image_tokens(s), s["vocab"] - 1
    lo, hi = max(4, s["seq"] * 24 // 512), max(8, s["seq"] * 56 // 512)
    out = []
    for _ in range(n):
        text = int(rng.integers(lo, hi + 1))
        ids = rng.integers(0, s["vocab"] - 1, size=n_img + text).astype(np.int32)
        ids[:n_img] = image_id
        labels = np.where(np.arange(len(ids)) >= n_img + text // 3, ids, -100).astype(np.int32)
        pix = rng.standard_normal((1, s["image"], s["image"], 3)).astype(np.float32)
        out.append({"input_ids": ids, "labels": labels, "pixel_values": pix})
    return out


def bucketed_batch(s: dict, examples: list[dict]) -> dict:
    """One example per row, right-padded to T: the layout both HF and our bucketed side run."""
    import numpy as np

    b, t = len(examples), s["seq"]
    ids = np.zeros((b, t), np.int32)
    labels = np.full((b, t), -100, np.int32)
    mask = np.zeros((b, t), np.int32)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = e["input_ids"], e["labels"], 1
    pix = np.concatenate([e["pixel_values"] for e in examples])
    return {"input_ids": ids, "labels": labels, "attention_mask": mask, "pixel_values": pix,
            "image_id": s["vocab"] - 1}  # fmt: skip


def packed_host_batch(s: dict, examples: list[dict]) -> tuple[dict, int]:
    """The first B packed rows (2 image slots each) of `examples`; returns (batch, examples)."""
    import numpy as np

    from mathjax_vl.data import packing

    spec = packing.PackSpec(("",), s["seq"], 2, (s["image"], s["image"], 3), 0)
    sizes = [((len(e["input_ids"]), 1),) for e in examples]
    groups = packing.first_fit_decreasing(sizes, spec)[: s["batch"]]
    if len(groups) < s["batch"]:
        raise ValueError("not enough examples for a packed batch")
    rows = [packing.build_row([examples[i] for i in g], spec) for g in groups]
    keys = ("input_ids", "labels", "attention_mask", "positions", "segment_ids",
            "pixel_values", "image_mask")  # fmt: skip
    return {k: np.stack([r[k] for r in rows]) for k in keys}, sum(len(g) for g in groups)


def matmul_rate_jax(n: int = 2048, reps: int = 5) -> float:
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        f(a, a).block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def matmul_rate_torch(n: int = 2048, reps: int = 5) -> float:
    import torch

    a = torch.randn(n, n)
    a @ a
    t = time.perf_counter()
    for _ in range(reps):
        a @ a
    return 2 * n**3 * reps / (time.perf_counter() - t)


def bench_hf(s: dict, batch: dict) -> dict:
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration, Qwen2Config
    from transformers import SiglipVisionConfig as HFSiglip

    torch.manual_seed(0)
    cfg = LlavaConfig(
        vision_config=HFSiglip(
            hidden_size=s["v_hidden"], intermediate_size=s["v_inter"],
            num_hidden_layers=s["v_layers"], num_attention_heads=s["v_heads"],
            image_size=s["image"], patch_size=s["patch"], vision_use_head=False,
        ),
        text_config=Qwen2Config(
            vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["inter"],
            num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
            num_key_value_heads=s["kv_heads"], max_position_embeddings=max(2048, s["seq"]),
            tie_word_embeddings=True,
        ),
        image_token_index=batch["image_id"], image_seq_length=image_tokens(s),
        vision_feature_select_strategy="full", vision_feature_layer=-1,
        tie_word_embeddings=True,
    )  # fmt: skip
    model = LlavaForConditionalGeneration(cfg).train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    ids = torch.from_numpy(batch["input_ids"]).long()
    labels = torch.from_numpy(batch["labels"]).long()
    pix = torch.from_numpy(batch["pixel_values"]).permute(0, 3, 1, 2).contiguous()
    mask = torch.from_numpy(batch["attention_mask"]).long() if "attention_mask" in batch else None
    mask = torch.ones_like(ids) if mask is None else mask

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(input_ids=ids, pixel_values=pix, attention_mask=mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(out.loss.detach())

    return {"params": params, "step": step}


def ours_config(s: dict, loss_impl: str = "fused", vocab_block: int = 0, packed: bool = False):
    from mathjax_vl.train.config_base import base_config

    c = base_config()
    c.task.name = "sft"
    c.model.kind = "vlm"
    c.model.decoder.update(
        vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["inter"],
        num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
        num_key_value_heads=s["kv_heads"], max_position_embeddings=max(2048, s["seq"]),
        tie_word_embeddings=True, rope_theta=1_000_000.0, scan_unroll=s["layers"],
    )  # fmt: skip
    c.model.vision = dict(
        kind="siglip", hidden_size=s["v_hidden"], intermediate_size=s["v_inter"],
        num_layers=s["v_layers"], num_heads=s["v_heads"], image_size=s["image"],
        patch_size=s["patch"], use_head=False, scan_unroll=s["v_layers"],
    )  # fmt: skip
    c.model.projector = dict(kind="mlp", input_dim=s["v_hidden"], output_dim=s["hidden"])
    c.model.image_token_id = s["vocab"] - 1
    c.model.vision_feature_layer = -1
    c.model.vision_feature_select_strategy = "full"
    c.data.seq_len = s["seq"]
    c.data.max_images = 2 if packed else 1
    c.data.layout = "packing" if packed else "bucketed"
    c.loss.impl = loss_impl
    c.loss.vocab_block = vocab_block  # 0 = whole vocabulary per token chunk (no recompute)
    c.train.global_batch_size = s["batch"]
    c.train.num_steps = 1000
    c.optim.update(learning_rate=1e-4, weight_decay=0.1, grad_clip_norm=1.0)
    c.mesh.num_devices = 1
    c.mesh.shape = {"data": 1, "fsdp": 1, "tensor": 1}
    return c


def bench_ours(s: dict, batch: dict, config=None, host: dict | None = None, **kw) -> dict:
    import jax
    import numpy as np

    from mathjax_vl.train import state as state_lib
    from mathjax_vl.train.data import to_global
    from mathjax_vl.train.trainer import Trainer

    config = config or ours_config(s, **kw)
    trainer = Trainer(config, "/tmp/mathjax_vl_bench_unused")
    state = state_lib.init_state(trainer.task, trainer.tx, trainer.setup, jax.random.key(0))
    host = host or {
        "input_ids": batch["input_ids"],
        "labels": batch["labels"],
        "attention_mask": batch.get("attention_mask", np.ones_like(batch["input_ids"])),
        "positions": np.broadcast_to(np.arange(s["seq"], dtype=np.int32), batch["input_ids"].shape),
        "pixel_values": batch["pixel_values"][:, None],
        "image_mask": np.ones((s["batch"], 1), np.int32),
    }
    gb = to_global(host, trainer.batch_shardings, trainer.global_batch)
    t = time.perf_counter()
    compiled = trainer.jitted.lower(state, gb).compile()
    compile_s = time.perf_counter() - t
    from mathjax_vl.train.step import mesh_context

    holder = {"state": state}

    def step():
        with mesh_context(trainer.mesh, trainer.rules):
            holder["state"], m = compiled(holder["state"], gb)
        return float(jax.block_until_ready(m["loss"]))

    return {
        "params": trainer.setup.param_count,
        "step": step,
        "hlo": compiled.as_text(),
        "compile_s": compile_s,
        "flops_per_row": trainer.task.model_flops_per_example(),
        "useful_tokens": int(np.asarray(host["attention_mask"]).sum()),
    }


# Our step with the speed knobs switched on one at a time (cumulative), from all off.
ABLATION = (
    ("all knobs off", {"loss.token_block": 1024, "loss.skip_inactive": False,
                       "model.decoder.attention_query_block": 0,
                       "model.decoder.scan_unroll": 1, "model.vision.scan_unroll": 1}),
    ("+ loss.skip_inactive", {"model.decoder.attention_query_block": 0,
                              "model.decoder.scan_unroll": 1, "model.vision.scan_unroll": 1}),
    ("+ attention_query_block 128", {"model.decoder.scan_unroll": 1,
                                     "model.vision.scan_unroll": 1}),
    ("+ scan_unroll (benchmark config)", {}),
)  # fmt: skip


def ablate(s: dict, batch: dict) -> None:
    """Interleaved steps of each ABLATION variant of our config; prints the median step."""
    runs = []
    for name, overrides in ABLATION:
        config = ours_config(s)
        for key, value in overrides.items():
            *path, last = key.split(".")
            node = config
            for part in path:
                node = node[part]
            node[last] = value
        runs.append((name, bench_ours(s, batch, config=config)["step"], []))
    for _, step, _ in runs:
        for _ in range(s["warmup"]):
            step()
    for _ in range(s["steps"] + 2):
        for _, step, times in runs:
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
    base = None
    for name, _, times in runs:
        med = sorted(times)[len(times) // 2]
        base = base or med
        print(f"{name:34s} median {med:.3f} s  best {min(times):.3f} s  {base / med:.2f}x")


def _hlo_dot_ops(hlo: str) -> set[str]:
    """Names of the instructions of an optimized HLO module that run a matmul: plain dots and
    fusions (XNNPACK/YNNPACK/oneDNN or loop) whose fused computation contains a dot."""
    import re

    with_dot, comp = set(), None
    for line in hlo.splitlines():
        m = re.match(r"^%?([\w.\-]+) .*\{$", line)
        if m and not line.startswith(" "):
            comp = m.group(1)
        elif comp and re.search(r"= \S+ (dot|convolution)\(", line):
            with_dot.add(comp)
    ops = set()
    for m in re.finditer(r"%([\w.\-]+) = \S+ (dot|convolution|fusion)\((.*)", hlo):
        name, kind, rest = m.groups()
        called = re.search(r"calls=%([\w.\-]+)", rest)
        if kind != "fusion" or (called and called.group(1) in with_dot):
            ops.add(name)
    return ops


def profile_side(side: str, step, sides: dict, reps: int = 2) -> dict:
    """Milliseconds per step in matmul kernels vs the rest, and the top op categories."""
    import collections
    import gzip
    import re
    import tempfile

    cats: collections.Counter = collections.Counter()
    if side == "ours":
        import jax

        dots = _hlo_dot_ops(sides["ours"]["hlo"])
        d = tempfile.mkdtemp(prefix="mjvl_prof_")
        jax.profiler.start_trace(d, create_perfetto_trace=True)
        for _ in range(reps):
            step()
        jax.profiler.stop_trace()
        trace = sorted(Path(d).rglob("*.trace.json.gz"))[-1]
        for e in json.load(gzip.open(trace))["traceEvents"]:
            name = e.get("name", "")
            if e.get("ph") != "X" or name.startswith(("ThunkExecutor", "$", "Slinky", "Pjit")):
                continue
            kind = "matmul" if name in dots else re.sub(r"[.\d]+$", "", name)
            cats[kind] += e["dur"] / 1e3 / reps
    else:
        import torch

        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(reps):
                step()
        matmul = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_flash")
        for ev in prof.key_averages():
            kind = "matmul" if ev.key.startswith(matmul) else ev.key
            cats[kind] += ev.self_cpu_time_total / 1e3 / reps
    total = sum(cats.values())
    return {"total_ms": total, "categories_ms": dict(cats.most_common(12))}


def print_profile(name: str, prof: dict) -> None:
    total = prof["total_ms"]
    print(f"{name}: {total:.0f} ms of op time per step (summed over threads' ops)")
    for kind, ms in prof["categories_ms"].items():
        print(f"    {ms:8.1f} ms {ms / total:6.1%}  {kind}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--json", default="")
    ap.add_argument("--loss-impl", default="fused", choices=["fused", "naive"])
    ap.add_argument("--vocab-block", type=int, default=0, help="fused CE vocab block; 0 = all")
    ap.add_argument("--profile", action="store_true", help="print each side's op-time split")
    ap.add_argument("--ablate", action="store_true", help="only our step, speed knobs off/on")
    ap.add_argument("--full-rows", action="store_true", help="every row one full example")
    args = ap.parse_args()
    s = QUICK if args.quick else FULL
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    batch = make_batch(s)
    if args.ablate:
        ablate(s, batch)
        return 0
    kw = dict(loss_impl=args.loss_impl, vocab_block=args.vocab_block)
    if args.full_rows:
        sides = {"ours": bench_ours(s, batch, **kw)}
        sides["ours"]["useful_tokens"] = s["batch"] * s["seq"]
    else:
        examples = make_examples(s, 8 * s["batch"])
        batch = bucketed_batch(s, examples[: s["batch"]])
        packed, n_packed = packed_host_batch(s, examples)
        sides = {
            "ours": bench_ours(s, batch, **kw),
            "ours_packed": bench_ours(
                s, batch, config=ours_config(s, packed=True, **kw), host=packed
            ),
        }
        sides["ours_packed"]["examples_per_step"] = n_packed
    tokens = s["batch"] * s["seq"]  # computed token slots per step (both layouts)
    out = {"shapes": s, "tokens_per_step": tokens}
    out["matmul_flops_jax"] = matmul_rate_jax()
    out["matmul_flops_torch"] = matmul_rate_torch()
    if not args.skip_hf:
        sides["hf"] = bench_hf(s, batch)
        sides["hf"]["useful_tokens"] = int(
            batch.get("attention_mask", batch["input_ids"] * 0 + 1).sum()
        )
    # Interleave the two sides' steps so both see the same background load (this machine is
    # shared); report each side's median step time.
    for r in sides.values():
        for _ in range(s["warmup"]):
            r["step"]()
    times = {k: [] for k in sides}
    for _ in range(s["steps"]):
        for k, r in sides.items():
            t = time.perf_counter()
            r["loss"] = r["step"]()
            times[k].append(time.perf_counter() - t)
    for k, r in sides.items():
        step_fn = r.pop("step")
        r["step_times_s"] = times[k]
        r["step_s"] = sorted(times[k])[len(times[k]) // 2]
        r["best_step_s"] = min(times[k])
        if args.profile:
            r["profile"] = profile_side(k, step_fn, sides)
        out[k] = r
    flops_step = out["ours"]["flops_per_row"] * s["batch"]
    out["model_flops_per_token"] = flops_step / tokens
    print(f"config: {s}; loss {args.loss_impl}, vocab_block {args.vocab_block or 'all'}")
    print(
        f"model FLOPs/token (fwd+bwd) {out['model_flops_per_token'] / 1e6:.1f} M; "
        f"f32 2048^3 matmul: JAX {out['matmul_flops_jax'] / 1e9:.1f} GFLOP/s, "
        f"torch {out['matmul_flops_torch'] / 1e9:.1f} GFLOP/s"
    )
    rows = [("ours (JAX)", out["ours"], out["matmul_flops_jax"])]
    if "ours_packed" in out:
        rows.append(("ours, packed", out["ours_packed"], out["matmul_flops_jax"]))
    if "hf" in out:
        rows.append(("HF PyTorch Llava", out["hf"], out["matmul_flops_torch"]))
    head = f"{'':18s} {'params':>10s} {'step s':>8s} {'best s':>8s} {'useful':>7s} {'tokens/s':>9s}"
    print(f"{head} {'MFU':>6s} {'loss':>7s}   (tokens/s = useful tokens/s; MFU of all slots)")
    for name, r, rate in rows:
        r["tokens_per_s"] = r["useful_tokens"] / r["step_s"]
        r["useful_fraction"] = r["useful_tokens"] / tokens
        r["mfu"] = flops_step / r["step_s"] / rate
        print(
            f"{name:18s} {r['params']:>10,d} {r['step_s']:8.3f} {r['best_step_s']:8.3f} "
            f"{r['useful_fraction']:7.3f} {r['tokens_per_s']:9.0f} {r['mfu']:6.1%} "
            f"{r['loss']:7.3f}"
        )
    if "hf" in out:
        for key, label in (("ours", "bucketed"), ("ours_packed", "packed")):
            if key not in out:
                continue
            r, h = out[key], out["hf"]
            sp = r["tokens_per_s"] / h["tokens_per_s"]
            best = (r["useful_tokens"] / r["best_step_s"]) / (h["useful_tokens"] / h["best_step_s"])
            out[f"speedup_{label}"] = sp
            out[f"speedup_{label}_best"] = best
            print(
                f"speed-up, useful tokens/s ours ({label}) / HF: {sp:.2f}x median step, "
                f"{best:.2f}x best step"
            )
    if args.profile:
        for name, r, _ in rows:
            print_profile(name, r["profile"])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
