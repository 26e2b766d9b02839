"""HF conversion at a real size: wall time, peak RSS and bit-exactness of import, export and the
round trip, each step a separate child process measured with os.wait4 (its own ru_maxrss).

    nice -n 10 python benchmarks/hf_conversion.py --size 1.5b --workdir /tmp/hfconv \
        --max-shard-size 1GB --out /tmp/hfconv/result.json

Steps: (1) `save_pretrained` a random Qwen2ForCausalLM of a real size in bfloat16 (built with
torch's default dtype set to bfloat16, so no float32 copy ever exists), sharded at
--max-shard-size; (2) `mathjax-vl import-hf SRC CKPT` (dtype kept: bfloat16 params);
(3) `mathjax-vl export-hf CKPT OUT --max-shard-size ...`; (4) every tensor of OUT compared
bit for bit with SRC, one tensor at a time; (5) optionally `from_pretrained(OUT)` with warnings
captured (--check-load; holds the model once, in torch). A `baseline` child (python + the CLI's
imports, no conversion) gives the fixed part of the RSS; the rest is attributed to the largest
tensor, which is how the 7B figure is extrapolated (--extrapolate 7b) without running it.
The run refuses to start unless MemAvailable exceeds 2.5x the bf16 model (the source build
holds the model once, plus one shard while saving).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

# Qwen2 family shapes (the real models' config.json values)
SIZES = {
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1024,
        tie_word_embeddings=True,
    ),
    "0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "1.5b": dict(
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "7b": dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        tie_word_embeddings=False,
    ),
}


def tensor_bytes(shape: dict, itemsize: int = 2) -> tuple[int, int]:
    """(total bytes, largest tensor bytes) of a Qwen2ForCausalLM of this shape."""
    d, f, n, v = (
        shape[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size")
    )
    dh = d // shape["num_attention_heads"]
    kv = shape["num_key_value_heads"] * dh
    layer = 2 * d + d * d + d + 2 * (kv * d + kv) + d * d + 3 * d * f
    total = v * d * (1 if shape["tie_word_embeddings"] else 2) + d + n * layer
    return total * itemsize, max(v * d, d * f) * itemsize


MAKE_SOURCE = r"""
import json, os, sys, torch, transformers
shape, path, shard = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.manual_seed(0)
torch.set_default_dtype(torch.bfloat16)  # parameters are created (and initialised) in bf16
cfg = transformers.Qwen2Config(max_position_embeddings=4096, **shape)
model = transformers.Qwen2ForCausalLM(cfg)
model.save_pretrained(path, max_shard_size=shard)
"""

COMPARE = r"""
import json, os, sys
import numpy as np
from mathjax_vl.hf.common import CheckpointReader
a, b = CheckpointReader(sys.argv[1]), CheckpointReader(sys.argv[2])
bad = []
if a.keys() != b.keys():
    bad.append(f"keys differ: {sorted(set(a.keys()) ^ set(b.keys()))[:5]}")
for k in a.keys():
    if not b.has(k):
        continue
    x, y = a.read(k), b.read(k)
    if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
        bad.append(k)
print(json.dumps({"tensors": len(a.keys()), "mismatched": bad[:10], "n_mismatched": len(bad)}))
"""

CHECK_LOAD = r"""
import json, logging, sys, warnings, torch, transformers
records = []
class H(logging.Handler):
    def emit(self, r): records.append(r.getMessage())
transformers.logging.get_logger("transformers").addHandler(H(logging.WARNING))
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    model, info = transformers.Qwen2ForCausalLM.from_pretrained(
        sys.argv[1], dtype=torch.bfloat16, output_loading_info=True)
print(json.dumps({"loading_info": {k: list(v) for k, v in info.items()},
                  "warnings": records + [str(x.message) for x in w],
                  "dtype": str(next(model.parameters()).dtype)}))
"""

BASELINE = r"""
import jax, numpy, ml_dtypes  # what the CLI imports before converting
from mathjax_vl.cli.main import main
from mathjax_vl.hf import registry, streaming, checkpoint
"""


def measured(name: str, argv: list[str], env: dict) -> dict:
    """Runs argv (niced) as a child: wall time, its own peak RSS (os.wait4 on its pid), output."""
    t0 = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        out_file = os.path.join(env["BENCH_TMP"], f"{name}.out")
        err_file = os.path.join(env["BENCH_TMP"], f"{name}.err")
        with open(out_file, "w") as fo, open(err_file, "w") as fe:
            proc = subprocess.Popen(
                ["nice", "-n", "10", *argv], env=env, stdout=fo, stderr=fe, stdin=devnull
            )
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    result = {
        "step": name,
        "wall_s": round(wall, 1),
        "peak_rss_gb": round(usage.ru_maxrss * 1024 / 1e9, 3),
        "rc": proc.returncode,
        "stdout": open(out_file).read()[-3000:],
        "stderr": open(err_file).read()[-3000:],
    }
    if proc.returncode != 0:
        print(f"{name} failed (rc {proc.returncode}):\n{result['stderr']}", file=sys.stderr)
        sys.exit(1)
    print(f"  {name}: {result['wall_s']} s, peak RSS {result['peak_rss_gb']} GB", flush=True)
    return result


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", choices=sorted(SIZES), default="1.5b")
    p.add_argument("--workdir", default="/tmp/hf_conversion_bench")
    p.add_argument("--max-shard-size", default="1GB", help="source and export shard size")
    p.add_argument("--check-load", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--extrapolate", default="7b", choices=sorted(SIZES))
    p.add_argument("--keep", action="store_true", help="keep the written directories")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args()

    shape = SIZES[args.size]
    total, largest = tensor_bytes(shape)
    if mem_available() < 2.5 * total:
        sys.exit(
            f"refusing: MemAvailable {mem_available() / 1e9:.1f} GB < 2.5 x the {args.size} "
            f"bf16 model ({total / 1e9:.1f} GB)"
        )
    if os.path.exists(args.workdir):
        shutil.rmtree(args.workdir)
    src, ckpt, out = (os.path.join(args.workdir, n) for n in ("src", "ckpt", "out"))
    tmp = os.path.join(args.workdir, "logs")
    os.makedirs(tmp)
    env = dict(os.environ, BENCH_TMP=tmp, JAX_PLATFORMS="cpu", TRANSFORMERS_VERBOSITY="warning")
    env.setdefault("PYTHONPATH", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    py = sys.executable
    cli = [py, "-m", "mathjax_vl.cli.main"]
    print(f"{args.size}: {total / 1e9:.2f} GB in bf16, largest tensor {largest / 1e9:.3f} GB")
    steps = [
        measured(
            "make_source", [py, "-c", MAKE_SOURCE, json.dumps(shape), src, args.max_shard_size], env
        )
    ]
    steps.append(measured("baseline", [py, "-c", BASELINE], env))
    steps.append(measured("import", [*cli, "import-hf", src, ckpt], env))
    steps.append(
        measured(
            "export", [*cli, "export-hf", ckpt, out, "--max-shard-size", args.max_shard_size], env
        )
    )
    cmp = measured("compare", [py, "-c", COMPARE, src, out], env)
    steps.append(cmp)
    exact = json.loads(cmp["stdout"].strip().splitlines()[-1])
    load = None
    if args.check_load:
        load_step = measured("from_pretrained", [py, "-c", CHECK_LOAD, out], env)
        steps.append(load_step)
        load = json.loads(load_step["stdout"].strip().splitlines()[-1])
    size_of = lambda d: sum(
        os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".safetensors")
    )
    sizes = {"src": size_of(src), "ckpt": size_of(ckpt), "out": size_of(out)}
    by = {s["step"]: s for s in steps}
    base = by["baseline"]["peak_rss_gb"]
    ext_total, ext_largest = tensor_bytes(SIZES[args.extrapolate])
    extrapolated = {}
    for step in ("import", "export"):
        per_largest = (by[step]["peak_rss_gb"] - base) * 1e9 / largest
        extrapolated[step] = round(base + per_largest * ext_largest / 1e9, 2)
    result = {
        "size": args.size,
        "checkpoint_gb": round(sizes["src"] / 1e9, 3),
        "files_gb": {k: round(v / 1e9, 3) for k, v in sizes.items()},
        "steps": [{k: v for k, v in s.items() if k not in ("stdout", "stderr")} for s in steps],
        "ratio_to_checkpoint": {
            s: round(by[s]["peak_rss_gb"] * 1e9 / sizes["src"], 3) for s in ("import", "export")
        },
        "bit_exact": exact["n_mismatched"] == 0 and exact["tensors"] > 0,
        "compare": exact,
        "from_pretrained": load,
        "export_stderr": by["export"]["stderr"].strip()[-500:],
        "extrapolated": {
            "size": args.extrapolate,
            "checkpoint_gb": round(ext_total / 1e9, 2),
            "peak_rss_gb": extrapolated,
            "method": "baseline RSS + (measured peak - baseline) scaled by the largest tensor",
        },
    }
    print("| step | wall s | peak RSS GB | x checkpoint |")
    print("|---|---|---|---|")
    for s in steps:
        ratio = s["peak_rss_gb"] * 1e9 / sizes["src"]
        print(f"| {s['step']} | {s['wall_s']} | {s['peak_rss_gb']} | {ratio:.2f} |")
    print(f"bit-exact round trip: {result['bit_exact']} ({exact['tensors']} tensors)")
    if load is not None:
        print(
            f"from_pretrained: {load['loading_info']} warnings {load['warnings']} {load['dtype']}"
        )
    print(f"extrapolated {args.extrapolate} ({ext_total / 1e9:.1f} GB): peak RSS {extrapolated}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    if not args.keep:
        for d in (src, ckpt, out):
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
