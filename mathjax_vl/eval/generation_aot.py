"""Per-device memory of generation on a mesh, from XLA's compiled memory analysis, without weights.

    report = generation_memory(model_cfg, mesh_sizes, batch=8, prompt_len=1024, new_tokens=512)

The parameters are ShapeDtypeStructs carrying the shardings generation would restore them with
(mathjax_vl.eval.sharded: training's logical-axis rules), so nothing is allocated; the VLM
embedding (vision tower + projector + scatter), the prefill (which creates the KV cache sharded)
and the decode loop are lowered and compiled with the exact in/out shardings `GenerationEngine`
uses. As for the train step (mathjax_vl.train.aot), a mesh larger than this machine's device
count is compiled on that many fake CPU devices: the partitioning and buffer sizes are real, the
temporaries are XLA:CPU's estimate of an accelerator's.

Peak of a stage = its arguments + outputs - donated aliases + temporaries. During decoding the
parameters and the cache are live together, so the decode figure is the one to compare with a
chip's HBM (v5e: 16 GiB).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util

FIELDS = (
    "argument_size_in_bytes",
    "output_size_in_bytes",
    "alias_size_in_bytes",
    "temp_size_in_bytes",
)


def _memory(compiled: Any) -> dict[str, int]:
    mem = compiled.memory_analysis()
    out = {f: int(getattr(mem, f, 0) or 0) for f in FIELDS}
    out["peak_bytes"] = (
        out["argument_size_in_bytes"]
        + out["output_size_in_bytes"]
        - out["alias_size_in_bytes"]
        + out["temp_size_in_bytes"]
    )
    return out


def generation_memory(
    model_cfg: Any,
    mesh_sizes: Mapping[str, int],
    batch: int,
    prompt_len: int,
    new_tokens: int,
    dtype: str = "bfloat16",
    images: int | None = None,
) -> dict[str, Any]:
    """Compile embed (a VLM), prefill and decode for this model / batch / lengths on a mesh of
    all visible devices; sizes per device in bytes. images: pixel batch of a VLM (default
    `batch`, one image per prompt)."""
    from mathjax_vl.decoding import (
        SamplingConfig,
        cache_shape,
        decode_fn,
        embed_fn,
        prefill_fn,
    )
    from mathjax_vl.eval.sharded import GenerationMesh, with_compute_dtype
    from mathjax_vl.models import registry

    gm = GenerationMesh.create(dict(mesh_sizes), devices=jax.devices())
    cfg = with_compute_dtype(model_cfg, dtype)
    flat = gm.shardings(cfg, dtype)
    params = traverse_util.unflatten_dict(flat, sep="/")
    vlm = registry.spec_of(cfg).role == "composite"
    text_cfg = cfg.text if vlm else cfg
    model = registry.build(text_cfg)
    s = prompt_len + new_tokens
    sds = jax.ShapeDtypeStruct
    report: dict[str, Any] = {
        "mesh": dict(gm.mesh.shape),
        "devices": gm.size,
        "platform": jax.devices()[0].platform,
        "batch": batch,
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "dtype": dtype,
        "params": sum(int(a.size) for a in flat.values()),
        "param_bytes_per_device": gm.bytes_per_device(list(flat.values())),
    }
    k_shape = cache_shape(text_cfg, batch, s)
    kv_bytes = 2 * int(jnp.dtype(text_cfg.dtype).itemsize)
    for d in k_shape:
        kv_bytes *= d
    report["kv_cache_bytes_total"] = kv_bytes
    stages = {}
    lm_params = params["language_model"] if vlm else params
    with gm.layout.context():
        t0 = time.perf_counter()
        if vlm:
            v = cfg.vision
            n = batch if images is None else images
            pix = sds((n, v.image_size, v.image_size, v.num_channels), jnp.float32)
            ids = sds((batch, prompt_len), jnp.int32)
            fn = embed_fn(cfg, gm.layout, params, ids.shape, pix.shape)
            stages["embed"] = _memory(fn.lower(params, ids, pix, {}).compile())
            x = sds((batch, prompt_len, text_cfg.hidden_size), jnp.dtype(text_cfg.dtype))
        else:
            x = sds((batch, prompt_len), jnp.int32)
        mask = sds((batch, prompt_len), jnp.int32)
        fn = prefill_fn(model, gm.layout, lm_params, x.shape, vlm, s)
        lowered = fn.lower(lm_params, x, mask)
        stages["prefill"] = _memory(lowered.compile())
        logits, cache, pos = jax.eval_shape(fn, lm_params, x, mask)
        sampling = SamplingConfig(max_new_tokens=new_tokens)
        fn = decode_fn(model, sampling, gm.layout, lm_params, k_shape)
        rng = jax.eval_shape(lambda: jax.random.key(0))  # the engine's typed key
        stages["decode"] = _memory(fn.lower(lm_params, logits, cache, pos, rng).compile())
        report["compile_s"] = time.perf_counter() - t0
    report["stages"] = stages
    return report


def format_generation_report(r: dict[str, Any]) -> str:
    gib = lambda b: f"{b / 2**20:9.1f} MiB"
    lines = [
        f"generation on mesh {r['mesh']} ({r['devices']} {r['platform']} devices), batch "
        f"{r['batch']}, prompt {r['prompt_len']} + {r['new_tokens']} new tokens, {r['dtype']}",
        f"parameters {r['params']:,}; per device (from shardings): "
        f"{gib(r['param_bytes_per_device'])}",
        f"KV cache, all devices together: {gib(r['kv_cache_bytes_total'])}",
        "XLA memory analysis, per device:",
        "  stage      arguments      outputs      aliased    temporary         peak",
    ]
    for name, m in r["stages"].items():
        lines.append(
            f"  {name:8s}" + "".join(f" {gib(m[f])}" for f in FIELDS) + f" {gib(m['peak_bytes'])}"
        )
    lines.append(f"compile {r['compile_s']:.1f} s")
    return "\n".join(lines)
