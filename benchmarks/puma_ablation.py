"""Math-PUMA Table 3 at toy scale: does stage 2 (KL alignment) narrow the text-vision gap?

    nice -n 19 python benchmarks/puma_ablation.py --out /tmp/puma_ablation      # full run
    python benchmarks/puma_ablation.py --quick --out /tmp/puma_ablation_quick  # smoke (the suite)
    python benchmarks/puma_ablation.py --set train.steps.puma_stage2=100 --out DIR

PRE-REGISTRATION (fixed before the first full run; a change afterwards is listed under CHANGES
with its reason, and the results are reported whatever they show)
-----------------------------------------------------------------------------------------------
Question. Math-PUMA Table 3: with stage 2 (1 -> 2 -> 3) the text-vision gap (TD - VO) / VO is
smaller and ALL higher than without it (1 -> 3) at the same compute. Expected shape: VO(1-2-3) >
VO(1-3), gap(1-2-3) < gap(1-3), ALL(1-2-3) > ALL(1-3). A difference counts only when its 95%
bootstrap interval (arms paired on seeds and problems) excludes 0; otherwise "no difference".

Task. Only `plane_geometry/regular_polygon` from the data engine: a regular polygon with
n in {5, 6, 7, 8, 9, 10, 12} sides, one of three questions (one interior angle, the interior sum,
the marked exterior angle). n and the question fix the answer and the chain-of-thought; vertex
names and the turn vary per seed (nuisance). The modality matters by construction of MathVerse's
versions: Text Only and Text Dominant state "... is a polygon with n sides"; Text Lite, Vision
Intensive and Vision Dominant drop that descriptive sentence, so n is only in the figure (count
the sides); Vision Only also moves the question into the figure (a banner too small to read at
96 px; the exterior question also draws its angle mark). Free-form answers only (no multiple
choice). Chance: a model that knows the question but not n scores at most 1/7 per question with
a constant answer (~14%); a model that reads n from text scores 100% on TO/TD.
Acceptance gate (fixed now): TD >= 40% in both arms, else the toy measures nothing.

Data (data_seed 0, one dataset for every seed and arm): 384 PUMA pairs (stage 2; their
text-only sides are stage 1's text SFT), 384 instruct conversations (stage 3: PUMA text-dominant
or vision-only, with image), 60 held-out MathVerse-style problems (test split of the engine's
content hash, so no training problem) x 6 versions = 360 items. Byte-level BPE, 1024 tokens.

Model. The demo's tiny VLM: CLIP-style ViT (2 layers, width 64, 96 px in 16 px patches -> 36
image tokens), MLP projector, Qwen2 decoder (2 layers, width 128, 4 heads, 2 KV heads). The tower
starts from random init (no CLIP-Math: see MAVIS below).

Training (demo_stages configs). Batch 16, seq_len 208, AdamW lr 2e-3, cosine, 10% warmup, wd 0.
Stage 1: 150 steps, text SFT, LLM only. Stage 2: 80 steps, KL alignment (alpha 0.2, tau 1,
lambda 0.1), tower + projector. Stage 3: 120 steps, everything. Arm 1-3: stage 3 for 80 + 120 =
200 steps from stage 1, so both arms take 350 steps (stage 1 included; tokens reported).
Seeds 0, 1, 2 (init and data order; stage 1 shared by the arms of a seed).
Sizing: the machine ran at load ~15-19 on 2 cores during the design runs (a stage-1 step took
~2.5 s, ~6x idle), so the run is sized to finish in about an hour at that load.

Design runs before this (not results): stage 1 at 300 steps, width 128, BPE 1024 -> Text Only
100%, Text Dominant 27% (the LLM had never seen image tokens) on 30 held-out problems; loss 0.009
at step 150. A first try with width 64 / BPE 512 / 96 new tokens cut answers off and copied n
wrongly (TO 25%); CLIP-Math at lr 2e-3 collapsed to the uniform loss ln 16 on these captions.

Evaluation. Greedy, at most 100 new tokens, the library's MathVerse extraction and matching.
ALL = mean of the five versions; per version incl. Text Only; gap; CV and |skewness| of the five
(`eval.metrics`); 95% percentile intervals from 2000 two-level bootstrap replicates (seeds and
problems resampled); the chart puma_ablation.png.

Not run (budget): the MAVIS (CLIP-Math vs generic tower) and MathCoder-VL (image-code alignment)
arms; the harness runs CLIP-Math when train.steps.clip_math > 0 and data.n_captions > 0.

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
            "n_captions": 0,  # no CLIP-Math (see the pre-registration)
            "n_pairs": 384,
            "n_instruct": 384,
            "n_image_code": 0,
            "n_eval_problems": 60,
            "vocab_size": 1024,
            "families": ("plane_geometry/regular_polygon",),
            "multiple_choice_fraction": 0.0,
        }
    )
    c.model.image_size = 96  # 6 x 6 patches of 16 px: the side count of a polygon stays visible
    c.model.text_hidden = 128
    c.train.batch_size = 16
    c.train.seq_len = 208  # longest record ~185 tokens (36 image + <= 48 prompt + <= 78 answer)
    c.train.response_len = 128
    c.train.caption_len = 64
    c.train.learning_rate = 2e-3
    c.train.steps = {
        "clip_math": 0,
        "puma_stage1": 150,
        "puma_stage2": 80,
        "puma_stage3": 120,
    }
    c.eval.max_new_tokens = 100  # the longest solution is 78 tokens
    c.eval.batch_size = 64
    c.stats = ml_collections.ConfigDict({"bootstrap": 2000, "ci": 0.95, "seed": 0})
    if variant == "quick":
        c.seeds = (0,)
        c.data.update(n_captions=16, n_pairs=24, n_instruct=16, n_eval_problems=3, vocab_size=400)
        # No CLIP-Math (0 steps: one compile less); the demo's test covers that chaining.
        c.train.steps = {"clip_math": 0, "puma_stage1": 3, "puma_stage2": 2, "puma_stage3": 2}
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
