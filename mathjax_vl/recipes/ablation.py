"""Math-PUMA's Table 3 ablation at toy scale: 1 -> 2 -> 3 against 1 -> 3, same data, same steps.

One run (`run_ablation`) generates the data once, then for each training seed trains CLIP-Math
(skipped when its steps are 0: the tower then starts from random init) and PUMA stage 1 (shared
by both arms: identical configs), branches into

    arm "1-2-3": stage 2 (KL alignment, S2 steps) then stage 3 (S3 steps, from stage 2);
    arm "1-3":   stage 3 for S2 + S3 steps straight from stage 1 (stage 2's steps go to stage 3),

and evaluates both arms' final checkpoints on the held-out MathVerse-style set (five versions
plus text-only). The stage configs are the demo's (`demo_stages.stage_configs`), so the ablation
measures the recipe the demo and the CLI run. Statistics and the chart live in `ablation_stats`.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import ml_collections

from mathjax_vl.recipes import ablation_stats, demo_data, demo_stages

ARMS = ("1-2-3", "1-3")
SHARED_STAGES = ("clip_math", "puma_stage1")


def _metrics_rows(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [row for row in rows if "loss" in row and "step" in row]


def stage_plan(
    cfg: ml_collections.ConfigDict,
    paths: dict[str, str],
    seed_dir: str,
    vocab: int,
    image_id: int,
    eos_id: int,
    seed: int,
) -> dict[str, ml_collections.ConfigDict]:
    """Run name -> trainer config for one seed, in run order (shared stages first)."""
    demo = copy.deepcopy(cfg)
    demo.seed = seed
    with demo.unlocked():
        demo.train.steps = {**cfg.train.steps.to_dict(), "image_to_code": 1}
    # Datasets of stages not run (image-to-code; CLIP-Math at 0 steps) need not exist.
    paths = {"contrastive": "", "image_to_code": "", **paths}
    configs = demo_stages.stage_configs(demo, paths, seed_dir, vocab, image_id, eos_id)
    steps = cfg.train.steps
    plan = {name: configs[name] for name in SHARED_STAGES}
    if steps.clip_math == 0:  # no CLIP-Math: stage 1 starts every tower from random init
        del plan["clip_math"]
        stage1 = plan["puma_stage1"]
        stage1.init.checkpoint, stage1.init.rename, stage1.init.allow_missing = "", [], []
    plan["puma_stage2"] = configs["puma_stage2"]
    plan["puma_stage3"] = configs["puma_stage3"]  # arm 1-2-3: initialised from stage 2
    no_stage2 = copy.deepcopy(configs["puma_stage3"])
    no_stage2.init.checkpoint = os.path.join(seed_dir, "puma_stage1", "checkpoints")
    no_stage2.train.num_steps = steps.puma_stage2 + steps.puma_stage3
    plan["puma_stage3_no_stage2"] = no_stage2
    for config in plan.values():
        config.metrics.progress_bar = False  # one bar for the whole ablation instead
        config.metrics.tensorboard = False
    return plan


# The runs each arm's compute is summed over (CLIP-Math is shared and counted in neither).
ARM_RUNS = {
    "1-2-3": ("puma_stage1", "puma_stage2", "puma_stage3"),
    "1-3": ("puma_stage1", "puma_stage3_no_stage2"),
}


def train_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """One stage through the trainer; its steps, summed tokens and first/last losses."""
    from mathjax_vl.recipes.demo import loss_ends
    from mathjax_vl.train.trainer import Trainer

    demo_stages.write_config_file(config, workdir, os.path.basename(workdir))
    start = time.perf_counter()
    result = Trainer(config, workdir).run()
    if result["status"] != "completed":
        raise RuntimeError(f"run {workdir} ended {result['status']!r} at step {result['step']}")
    rows = _metrics_rows(workdir)
    first, last = loss_ends([r["loss"] for r in rows])
    return {
        "steps": int(result["step"]),
        "tokens": int(sum(r.get("tokens", 0) for r in rows)),
        "loss_first": first,
        "loss_last": last,
        "seconds": time.perf_counter() - start,
    }


def evaluate_run(cfg, paths: dict[str, str], workdir: str, problems, out_dir: Path) -> list[Any]:
    """Greedy answers of a run's last checkpoint to every held-out problem, scored."""
    from mathjax_vl.eval.evaluator import write_responses
    from mathjax_vl.eval.generation import GenerationConfig, GenerationEngine
    from mathjax_vl.eval.loading import load_train_checkpoint
    from mathjax_vl.eval.scoring import score_all

    handle = load_train_checkpoint(
        workdir, os.path.join(workdir, "config.py"), tokenizer_dir=paths["tokenizer"]
    )
    engine = GenerationEngine(
        handle,
        GenerationConfig(max_new_tokens=cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size),
    )
    responses = engine.generate_problems(problems)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_responses(problems, responses, out_dir / "responses.jsonl")
    return score_all(problems, responses, "mathverse")


def _compilation_cache(path: str | None) -> None:
    """Every seed (and stage 3 of both arms) compiles the same programs: compile each once."""
    if path is None:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _write_results(cfg, out: Path, runs, items, seeds, problems, paths, start) -> dict[str, Any]:
    """Statistics, table, chart and summary.json over the seeds finished so far."""
    compute = {
        arm: {
            str(seed): {
                "steps": sum(runs[str(seed)][r]["steps"] for r in ARM_RUNS[arm]),
                "tokens": sum(runs[str(seed)][r]["tokens"] for r in ARM_RUNS[arm]),
            }
            for seed in seeds
        }
        for arm in ARMS
    }
    finished = {arm: {s: items[arm][s] for s in seeds} for arm in ARMS}
    stats = ablation_stats.summarize_arms(
        finished, cfg.stats.bootstrap, cfg.stats.ci, cfg.stats.seed
    )
    chart = ablation_stats.bar_chart(stats, str(out / "puma_ablation.png"), cfg.stats.ci)
    result = {
        "complete": False,
        "seconds": time.perf_counter() - start,
        "seeds": list(seeds),
        "eval_problems": len({p.problem_id for p in problems}),
        "eval_items": len(problems),
        "runs": runs,
        "compute": compute,
        "stats": stats,
        "chart": chart,
        "paths": paths,
    }
    table = ablation_stats.markdown_table(stats, cfg.stats.ci)
    (out / "results.md").write_text(table + "\n")
    (out / "summary.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def run_ablation(cfg: ml_collections.ConfigDict, log=print) -> dict[str, Any]:
    """The whole ablation; writes summary.json, results.md and the chart under cfg.out_dir."""
    from tqdm import tqdm

    from mathjax_vl.eval.benchmarks import load_benchmark
    from mathjax_vl.recipes.demo import _tokenizer_ids

    out = Path(cfg.out_dir).absolute()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"ablation output directory {out} is not empty; pass another --out")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    log(f"puma ablation -> {out}")
    _compilation_cache(str(out / "jax_cache") if cfg.compilation_cache else None)
    data_cfg = demo_data.DemoDataConfig(seed=cfg.data_seed, **cfg.data.to_dict())
    paths = demo_data.generate_all(data_cfg, str(out), log)
    data_seconds = time.perf_counter() - start
    problems = load_benchmark("generic", paths["mathverse_eval"], split="test")
    vocab, image_id, eos_id = _tokenizer_ids(paths["tokenizer"])
    seeds = list(cfg.seeds)
    steps = cfg.train.steps
    per_seed_steps = (
        steps.clip_math + steps.puma_stage1 + steps.puma_stage2 * 2 + steps.puma_stage3 * 2
    )
    bar = tqdm(
        total=len(seeds) * (per_seed_steps + len(ARMS) * len(problems)),
        desc="ablation (steps + eval answers)",
        unit="u",
        dynamic_ncols=True,
    )
    runs: dict[str, dict[str, dict]] = {}
    items: dict[str, dict[int, list]] = {arm: {} for arm in ARMS}
    try:
        for seed in seeds:
            seed_dir = str(out / "runs" / f"seed{seed}")
            plan = stage_plan(cfg, paths, seed_dir, vocab, image_id, eos_id, seed)
            runs[str(seed)] = {}
            for name, config in plan.items():
                bar.set_postfix_str(f"seed {seed} {name}")
                runs[str(seed)][name] = row = train_run(config, os.path.join(seed_dir, name))
                bar.update(row["steps"])
                log(
                    f"  seed {seed} {name}: {row['steps']} steps, {row['tokens']} tokens, loss "
                    f"{row['loss_first']:.3f} -> {row['loss_last']:.3f}, {row['seconds']:.0f} s"
                )
            for arm in ARMS:
                bar.set_postfix_str(f"seed {seed} eval {arm}")
                final = os.path.join(seed_dir, ARM_RUNS[arm][-1])
                where = out / "eval" / arm / f"seed{seed}"
                scored = evaluate_run(cfg, paths, final, problems, where)
                items[arm][seed] = scored
                bar.update(len(problems))
                acc = 100.0 * sum(i.correct for i in scored) / len(scored)
                log(f"  seed {seed} arm {arm}: {acc:.1f}% of {len(scored)} answers correct")
            # Results so far after every seed: a run stopped early still reports its seeds.
            done = [s for s in seeds if s in items[ARMS[-1]]]
            result = _write_results(cfg, out, runs, items, done, problems, paths, start)
    finally:
        bar.close()
    result.update(complete=True, seconds=time.perf_counter() - start, data_seconds=data_seconds)
    (out / "summary.json").write_text(json.dumps(result, indent=2, default=str))
    table = (out / "results.md").read_text().rstrip("\n")
    chart = result["chart"]
    log("")
    log(table)
    log(f"\nchart: {chart}; total {result['seconds']:.0f} s (data {data_seconds:.0f} s)")
    return result
