"""Math-PUMA Table 3 at toy scale: does stage 2 (KL alignment) narrow the text-vision gap?

    nice -n 19 python benchmarks/puma_ablation.py --out /tmp/puma_ablation      # full run
    python benchmarks/puma_ablation.py --quick --out /tmp/puma_ablation_quick  # smoke (the suite)
    python benchmarks/puma_ablation.py --set train.steps.puma_stage2=100 --out DIR

PRE-REGISTRATION (fixed before the first full run; a change afterwards is listed under CHANGES
with its reason, and the results are reported whatever they show)
-----------------------------------------------------------------------------------------------
(filled in below, see PREREGISTERED)

CHANGES after the first full run
--------------------------------
(none yet)
"""

from __future__ import annotations

import argparse
import sys
import time

import ml_collections

from mathjax_vl.recipes.demo_config import get_config as demo_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """Every knob of the ablation (data, model, steps, eval, statistics); variant '' or 'quick'."""
    c = demo_config()
    c.out_dir = "puma_ablation_out"
    c.data_seed = 0  # one dataset for every seed and arm ("same data")
    c.seeds = (0, 1, 2)  # training seeds (init, data order) per arm
    c.compilation_cache = True  # JAX persistent cache under OUT/jax_cache: compile once, not 15x
    c.data = ml_collections.ConfigDict(
        {
            "workers": 2,
            "n_captions": 256,
            "n_pairs": 512,
            "n_instruct": 512,
            "n_image_code": 0,
            "n_eval_problems": 80,
            "vocab_size": 512,
            "families": ("plane_geometry/regular_polygon",),
            "multiple_choice_fraction": 0.0,
        }
    )
    c.model.image_size = 96  # 6 x 6 patches of 16 px: the side count of a polygon stays visible
    c.train.batch_size = 16
    c.train.seq_len = 256
    c.train.response_len = 128
    c.train.caption_len = 64
    c.train.learning_rate = 2e-3
    c.train.steps = {
        "clip_math": 100,
        "puma_stage1": 200,
        "puma_stage2": 150,
        "puma_stage3": 150,
    }
    c.eval.max_new_tokens = 96
    c.eval.batch_size = 64
    c.stats = ml_collections.ConfigDict({"bootstrap": 2000, "ci": 0.95, "seed": 0})
    if variant == "quick":
        c.seeds = (0,)
        c.data.update(n_captions=16, n_pairs=24, n_instruct=16, n_eval_problems=3, vocab_size=400)
        c.train.steps = {"clip_math": 2, "puma_stage1": 3, "puma_stage2": 2, "puma_stage3": 2}
        c.train.batch_size = 4
        c.eval.max_new_tokens = 8
        c.eval.batch_size = 18
        c.stats.bootstrap = 50
    elif variant:
        raise ValueError(f"unknown ablation config variant {variant!r}; expected '' or 'quick'")
    return c


def main(argv: list[str] | None = None) -> int:
    import logging
    import os

    from mathjax_vl.train.config_loader import apply_override

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING)

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="empty (or new) output directory")
    p.add_argument("--quick", action="store_true", help="the smoke-test variant (seconds)")
    p.add_argument("--set", action="append", default=[], help="key=value config override")
    args = p.parse_args(argv)
    config = get_config("quick" if args.quick else "")
    try:
        for item in args.set:
            apply_override(config, item)
    except (KeyError, ValueError, TypeError) as err:
        print(f"puma_ablation: --set: {err}", file=sys.stderr)
        return 2
    config.out_dir = args.out
    from mathjax_vl.recipes.ablation import run_ablation

    start = time.perf_counter()
    try:
        run_ablation(config)
    except FileExistsError as err:
        print(f"puma_ablation: {err}", file=sys.stderr)
        return 2
    print(f"wall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
