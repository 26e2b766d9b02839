"""Attention kernels on an accelerator: forward + backward time and agreement with the XLA
reference, on packed rows (segments + padding) with GQA, at training shapes.

    python benchmarks/attention_kernels.py                  # impls for this backend
    python benchmarks/attention_kernels.py --impls xla,cudnn --dtype bfloat16 --seq 4096
    python benchmarks/attention_kernels.py --quick          # small shapes (CPU smoke run)

Backends: GPU runs "xla" (the einsum reference of layers.Attention), "dot_product_attention"
and "cudnn"; TPU runs "xla", "dot_product_attention" and "splash"; CPU runs "xla" and
"dot_product_attention" ("splash" in interpret mode only with --impls splash, slowly).
Default shapes are Qwen2-1.5B's attention (12 query heads, 2 KV heads, head_dim 128) at
batch 4 x 2048 tokens in bfloat16, each row packed with examples of ~850 tokens (Math-PUMA
stage 3) then padding. Reported per impl: median ms of a jitted value-and-grad of
sum(out * w) over real tokens (`--repeats` timed calls after one warm-up), achieved
TFLOP/s of the causal attention FLOPs (4 * B * H * T^2 * Dh / 2 forward, x 3.5 with the
backward), and the max |difference| of the output and dq against the XLA reference at real
tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from mathjax_vl.models import attention_kernels as ak  # noqa: E402

DEFAULT_IMPLS = {
    "gpu": ("xla", "dot_product_attention", "cudnn"),
    "tpu": ("xla", "dot_product_attention", "splash"),
    "cpu": ("xla", "dot_product_attention"),
}


def packed_segments(b: int, t: int, example: int, rng: np.random.Generator) -> np.ndarray:
    """Rows of whole examples (lengths around `example`), then padding (0)."""
    seg = np.zeros((b, t), np.int32)
    for r in range(b):
        at, s = 0, 1
        while True:
            n = int(rng.integers(int(example * 0.9), int(example * 1.1) + 1))
            if at + n > t:
                break
            seg[r, at : at + n] = s
            at, s = at + n, s + 1
    return seg


def xla_reference(q, k, v, seg, *, scale):
    """layers.Attention's XLA path: the dense mask of make_attention_mask, float32 softmax."""
    from mathjax_vl.models.layers import make_attention_mask

    b, t, h, d = q.shape
    kv = k.shape[2]
    idx = jnp.arange(t)
    mask = make_attention_mask(idx, idx, seg > 0, seg, seg)  # [B, 1, T, T]
    qh = q.reshape(b, t, kv, h // kv, d)
    s = jnp.einsum("btkgd,bskd->bkgts", qh, k).astype(jnp.float32) * scale
    s = jnp.where(mask[:, :, None], s, -0.7 * float(np.finfo(np.float32).max))
    p = jax.nn.softmax(s, axis=-1).astype(q.dtype)
    return jnp.einsum("bkgts,bskd->btkgd", p, v).reshape(b, t, h, d)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impls", default="", help="comma-separated; default: this backend's")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--example", type=int, default=850, help="packed example length")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if args.quick:
        args.batch, args.seq, args.heads, args.kv_heads, args.head_dim = 2, 256, 4, 2, 32
        args.example, args.repeats = 100, 3
    backend = jax.default_backend()
    impls = args.impls.split(",") if args.impls else DEFAULT_IMPLS.get(backend, ("xla",))
    dtype = jnp.dtype(args.dtype)
    b, t, h, kv, d = args.batch, args.seq, args.heads, args.kv_heads, args.head_dim
    rng = np.random.default_rng(0)
    seg = jnp.asarray(packed_segments(b, t, args.example, rng))
    real = np.asarray(seg) > 0
    keys = jax.random.split(jax.random.key(0), 4)
    q = jax.random.normal(keys[0], (b, t, h, d), jnp.float32).astype(dtype)
    k = jax.random.normal(keys[1], (b, t, kv, d), jnp.float32).astype(dtype)
    v = jax.random.normal(keys[2], (b, t, kv, d), jnp.float32).astype(dtype)
    w = jax.random.normal(keys[3], (b, t, h, d), jnp.float32)
    scale = d**-0.5
    fns = {"xla": xla_reference, **{n: ak.get(n) for n in ak.KERNELS}}

    def loss_fn(kernel):
        def f(q, k, v):
            out = kernel(q, k, v, seg, scale=scale).astype(jnp.float32)
            return jnp.sum(jnp.where(jnp.asarray(real)[:, :, None, None], out * w, 0.0)), out

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))

    flops = 4 * b * h * t * t * d / 2 * 3.5  # causal half; backward ~2.5x the forward
    results, ref = {}, None
    print(f"backend {backend} ({jax.devices()[0].device_kind}); B={b} T={t} H={h} KV={kv} "
          f"Dh={d} {args.dtype}; real tokens {real.mean():.3f}")  # fmt: skip
    for name in ["xla", *[i for i in impls if i != "xla"]]:
        fn = loss_fn(fns[name])
        try:
            (_, out), grads = jax.block_until_ready(fn(q, k, v))
        except Exception as err:  # e.g. cudnn on a GPU/driver without fused attention
            print(f"{name:24s} failed: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
            continue
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(q, k, v))
            times.append(time.perf_counter() - t0)
        med = float(np.median(times))
        row = {"ms": 1e3 * med, "tflops": flops / med / 1e12}
        out, dq = np.asarray(out, np.float32), np.asarray(grads[0], np.float32)
        if ref is None:
            ref = (out, dq)
        else:
            row["max_abs_out"] = float(np.abs(out - ref[0])[real].max())
            row["max_abs_dq"] = float(np.abs(dq - ref[1])[real].max())
        results[name] = row
        diff = (
            f"  |out-xla| {row['max_abs_out']:.2e}  |dq-xla| {row['max_abs_dq']:.2e}"
            if "max_abs_out" in row
            else "  (reference)"
        )
        print(f"{name:24s} {row['ms']:9.2f} ms  {row['tflops']:7.2f} TFLOP/s{diff}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
