"""`mathjax-vl compile --config configs/x.py --mesh data=..,fsdp=..,tensor=.. [--config.k=v]`.

AOT-compiles the train step on abstract shapes and prints per-device memory from XLA's memory
analysis without allocating the model. A mesh larger than the local device count is compiled on
that many fake CPU devices in a subprocess.

--generate compiles generation instead (mathjax_vl.eval.generation_aot): the VLM embedding,
prefill and decode loop of the config's model, sharded as `eval --mesh` shards them, for
--batch prompts of --prompt-len tokens plus --new-tokens, in --dtype (no weights needed):

    mathjax-vl compile --config configs/puma_stage3_instruct.py:7b --mesh fsdp=4,tensor=2 \
        --generate --batch 8 --prompt-len 1024 --new-tokens 512
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys


def register(subparsers) -> None:
    from mathjax_vl.cli.commands.train import enable_config_overrides

    p = subparsers.add_parser(
        "compile",
        help="AOT-compile the train step on a mesh and report per-device memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True)
    p.add_argument("--mesh", required=True, help="data=1,fsdp=8,tensor=1")
    p.add_argument("--global-batch", type=int, default=0, help="override train.global_batch_size")
    p.add_argument("--json", default="", help="also write the report as JSON to this file")
    p.add_argument("--generate", action="store_true", help="report generation memory instead")
    p.add_argument("--batch", type=int, default=8, help="--generate: prompts per batch")
    p.add_argument("--prompt-len", type=int, default=1024, help="--generate: prompt tokens")
    p.add_argument("--new-tokens", type=int, default=512, help="--generate: generated tokens")
    p.add_argument("--images", type=int, default=None, help="--generate: images per batch")
    p.add_argument("--dtype", default="bfloat16", help="--generate: params / compute dtype")
    enable_config_overrides(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from mathjax_vl.train.mesh import parse_mesh_arg

    sizes = parse_mesh_arg(args.mesh)
    if any(v == -1 for v in sizes.values()):
        print("error: --mesh needs explicit sizes (no -1)", file=sys.stderr)
        return 2
    wanted = math.prod(sizes.values())
    if os.environ.get("_MATHJAX_VL_COMPILE_CHILD") != "1":
        import jax

        if jax.device_count() != wanted:
            return _respawn(wanted)
    from mathjax_vl.train import aot
    from mathjax_vl.train.config_loader import load_config

    overrides = list(getattr(args, "config_overrides", []))
    overrides += [f"--config.mesh.shape={sizes!r}", "--config.mesh.num_devices=0"]
    if args.global_batch:
        overrides.append(f"--config.train.global_batch_size={args.global_batch}")
    config = load_config(args.config, overrides)
    if args.generate:
        from mathjax_vl.eval import generation_aot
        from mathjax_vl.models.build import model_config

        if min(args.batch, args.prompt_len, args.new_tokens) < 1:
            print("error: --batch, --prompt-len and --new-tokens must be >= 1", file=sys.stderr)
            return 2
        report = generation_aot.generation_memory(
            model_config(config.model),
            sizes,
            args.batch,
            args.prompt_len,
            args.new_tokens,
            args.dtype,
            args.images,
        )
        print(generation_aot.format_generation_report(report))
    else:
        report = aot.compile_report(config)
        print(aot.format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


def _respawn(devices: int) -> int:
    """Re-run this command on `devices` fake CPU devices."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    env["_MATHJAX_VL_COMPILE_CHILD"] = "1"
    print(f"compiling on {devices} fake CPU devices (subprocess)", file=sys.stderr)
    cmd = [sys.executable, "-m", "mathjax_vl.cli.main", *sys.argv[1:]]
    if not sys.argv[1:] or sys.argv[1] != "compile":
        cmd = [sys.executable, "-m", "mathjax_vl.cli.main", *_argv_from_main()]
    return subprocess.call(cmd, env=env)


def _argv_from_main() -> list[str]:
    return sys.argv[sys.argv.index("compile") :] if "compile" in sys.argv else sys.argv[1:]
