"""`mathjax-vl demo`: the whole system on one machine, nothing downloaded.

Generate every kind of dataset -> train a tokenizer -> CLIP-Math -> Math-PUMA stages 1-3 ->
image-to-code -> evaluate on a held-out generated MathVerse-style set -> export to Hugging Face
Llava -> reload the export with `transformers` and answer one problem (checking it answers exactly
as our own generation engine does). Ends with a table (stage, steps, loss first -> last, time) and
where each artefact was written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import ml_collections

from mathjax_vl.recipes import demo_data, demo_stages


@dataclasses.dataclass
class StageRow:
    stage: str
    steps: int
    loss_first: float  # mean training loss of the first steps (each step sees other examples)
    loss_last: float  # ... and of the last steps
    fixed_before: float  # loss on the same fixed batches with the stage's initial parameters
    fixed_after: float  # ... and with its final parameters
    seconds: float
    workdir: str

    @property
    def fell(self) -> bool:
        """Judged on fixed batches: per-step training losses mix batch difficulty into the trend
        (stage 2's CE term is mostly the frozen LLM's, so its step losses are batch noise)."""
        return self.fixed_after < self.fixed_before


def fixed_batch_losses(
    trainer, config, initial, final, num_batches: int = 2
) -> tuple[float, float]:
    """Mean task loss over the stage's first `num_batches` batches before and after training."""
    import jax
    import numpy as np

    from mathjax_vl.train import data as data_lib
    from mathjax_vl.train import step as step_lib

    iterator = data_lib.build_iterator(config, trainer.task, 0, 1)
    batches = [next(iterator) for _ in range(num_batches)]

    @jax.jit
    def loss(params, batch):
        return trainer.task.loss(params, batch, jax.random.key(0))[0]

    def mean_loss(state) -> float:
        with step_lib.mesh_context(trainer.mesh, trainer.rules):
            values = [loss(state.params(), jax.tree.map(np.asarray, b)) for b in batches]
        return float(np.mean(jax.device_get(values)))

    return mean_loss(initial), mean_loss(final)


def read_losses(workdir: str) -> list[float]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [row["loss"] for row in rows if "loss" in row and "step" in row]


def loss_ends(losses: list[float], window: int = 3) -> tuple[float, float]:
    """Mean of the first and of the last `window` step losses (single steps are noisy)."""
    if not losses:
        raise ValueError("the stage logged no loss")
    window = max(1, min(window, len(losses) // 2 or 1))
    return sum(losses[:window]) / window, sum(losses[-window:]) / window


def _tokenizer_ids(tokenizer_dir: str) -> tuple[int, int, int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    image_id = tok.convert_tokens_to_ids("<image>")
    if image_id is None or image_id == tok.unk_token_id:
        raise ValueError(f"tokenizer {tokenizer_dir} has no <image> token")
    return len(tok), image_id, tok.convert_tokens_to_ids("<|im_end|>")


def train_stages(
    demo: ml_collections.ConfigDict, paths: dict[str, str], out: Path, log
) -> list[StageRow]:
    from mathjax_vl.train.trainer import Trainer

    vocab, image_id, eos_id = _tokenizer_ids(paths["tokenizer"])
    configs = demo_stages.stage_configs(demo, paths, str(out / "runs"), vocab, image_id, eos_id)
    rows = []
    for index, (name, config) in enumerate(configs.items(), start=1):
        workdir = str(out / "runs" / name)
        demo_stages.write_config_file(config, workdir, name)
        log(f"[stage {index}/{len(configs)}] {name}: {config.train.num_steps} steps")
        start = time.perf_counter()
        trainer = Trainer(config, workdir)
        initial = trainer.initial_state()  # what run() starts from (fresh or previous stage)
        result = trainer.run()
        if result["status"] != "completed":
            raise RuntimeError(f"stage {name} ended {result['status']!r} at step {result['step']}")
        seconds = time.perf_counter() - start
        first, last = loss_ends(read_losses(workdir))
        before, after = fixed_batch_losses(trainer, config, initial, result["state"])
        rows.append(StageRow(name, result["step"], first, last, before, after, seconds, workdir))
        log(
            f"  training loss {first:.3f} -> {last:.3f}; fixed-batch loss {before:.4f} -> "
            f"{after:.4f}; {seconds:.0f} s"
        )
    return rows


def evaluate_stage(demo, paths: dict[str, str], workdir: str, out: Path) -> tuple[Any, Any, dict]:
    from mathjax_vl.eval.benchmarks import load_benchmark
    from mathjax_vl.eval.evaluator import evaluate
    from mathjax_vl.eval.generation import GenerationConfig, GenerationEngine
    from mathjax_vl.eval.loading import load_train_checkpoint

    handle = load_train_checkpoint(
        workdir, os.path.join(workdir, "config.py"), tokenizer_dir=paths["tokenizer"]
    )
    engine = GenerationEngine(
        handle,
        GenerationConfig(max_new_tokens=demo.eval.max_new_tokens, batch_size=demo.eval.batch_size),
    )
    problems = load_benchmark("generic", paths["mathverse_eval"], split="test")
    summary = evaluate(problems, "mathverse", out / "eval", engine=engine, progress=True)
    return handle, engine, {"summary": summary, "problems": problems}


def codify_stage(demo, paths: dict[str, str], workdir: str, problems) -> dict[str, int]:
    """MathCoder-VL's model-in-the-loop step with the image-to-code checkpoint: write programs for
    held-out figures, run them in the sandbox, keep those whose render matches (counts)."""
    from mathjax_vl.datagen.codify import CodifyConfig, codify
    from mathjax_vl.datagen.sandbox import FigureExecutor, SandboxConfig
    from mathjax_vl.eval.generation import GenerationConfig, GenerationEngine, codify_generator
    from mathjax_vl.eval.loading import load_train_checkpoint

    handle = load_train_checkpoint(
        workdir, os.path.join(workdir, "config.py"), tokenizer_dir=paths["tokenizer"]
    )
    engine = GenerationEngine(
        handle,
        GenerationConfig(max_new_tokens=demo.eval.code_max_new_tokens, batch_size=4),
    )
    figures = [(f"{p.problem_id}-{p.version}", p.images[0]) for p in problems if p.images]
    figures = figures[: demo.eval.codify_figures]
    with FigureExecutor(SandboxConfig(workers=1, timeout_s=10.0)) as executor:
        report = codify(figures, codify_generator(engine), executor, CodifyConfig(), batch_size=4)
    return report.counts()


def export_and_reload(handle, engine, problem, export_dir: Path, tokenizer_dir: str) -> dict:
    """Exports to HF Llava, reloads with transformers, answers `problem` greedily with both."""
    import numpy as np
    import torch
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    from mathjax_vl.eval.generation import problem_request
    from mathjax_vl.hf.registry import save_hf

    save_hf("llava", handle.config, handle.params, str(export_dir), tokenizer_dir=tokenizer_dir)
    model = LlavaForConditionalGeneration.from_pretrained(str(export_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(export_dir))
    request = problem_request(problem)
    ids = torch.tensor(engine.prompt_ids(request)[None].astype(np.int64))
    pixels = np.stack(engine.pixel_values(request)).transpose(0, 3, 1, 2)  # NHWC -> NCHW
    with torch.no_grad():
        generated = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values=torch.tensor(pixels),
            max_new_tokens=engine.config.max_new_tokens,
            do_sample=False,
            eos_token_id=list(engine.stop_ids),
            pad_token_id=engine.pad_id,
        )[0, ids.shape[1] :].tolist()
    ours = engine.generate([request])[0]
    hf_ids = [t for t in generated if t not in engine.stop_ids and t != engine.pad_id]
    return {
        "export_dir": str(export_dir),
        "question": problem.question,
        "gold_answer": problem.answer,
        "transformers_answer": tokenizer.decode(hf_ids, skip_special_tokens=True),
        "ours_answer": ours.text,
        "token_identical": list(ours.token_ids) == hf_ids,
    }


def summary_table(rows: list[StageRow]) -> str:
    lines = [
        "| stage | steps | training loss first -> last | fixed-batch loss before -> after "
        "| time (s) |",
        "| --- | ---: | --- | --- | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.stage} | {r.steps} | {r.loss_first:.3f} -> {r.loss_last:.3f} | "
            f"{r.fixed_before:.4f} -> {r.fixed_after:.4f} | {r.seconds:.0f} |"
        )
    return "\n".join(lines)


def run_demo(demo: ml_collections.ConfigDict, log=print) -> dict[str, Any]:
    import importlib.util

    if importlib.util.find_spec("torch") is None:  # fail now, not after training
        raise RuntimeError(
            "the demo reloads its Hugging Face export with transformers, which needs PyTorch: "
            'pip install -e ".[demo]"'
        )
    out = Path(demo.out_dir).absolute()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"demo output directory {out} is not empty; pass another --out")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    log(f"mathjax-vl demo -> {out}")
    log("[data] generating datasets and a tokenizer")
    data_cfg = demo_data.DemoDataConfig(seed=demo.seed, **demo.data.to_dict())
    paths = demo_data.generate_all(data_cfg, str(out), log)
    data_seconds = time.perf_counter() - start
    rows = train_stages(demo, paths, out, log)
    log("[eval] held-out MathVerse-style set with the stage-3 model")
    stage3 = next(r for r in rows if r.stage == "puma_stage3").workdir
    handle, engine, evaluation = evaluate_stage(demo, paths, stage3, out)
    log("[codify] image-to-code checkpoint over held-out figures, programs run in the sandbox")
    code_run = next(r for r in rows if r.stage == "image_to_code").workdir
    codify_counts = codify_stage(demo, paths, code_run, evaluation["problems"])
    log(f"  outcomes: {codify_counts}")
    log("[export] Hugging Face Llava, reloaded with transformers")
    problem = next(p for p in evaluation["problems"] if p.images)  # exercise the vision path
    answer = export_and_reload(handle, engine, problem, out / "hf_export", paths["tokenizer"])
    summary = evaluation["summary"]
    result = {
        "seconds": time.perf_counter() - start,
        "data_seconds": data_seconds,
        "stages": [dataclasses.asdict(r) for r in rows],
        "all_losses_fell": all(r.fell for r in rows),
        "eval": {k: summary[k] for k in ("overall", "per_version", "gap", "files")},
        "reload": answer,
        "codify": codify_counts,
        "artefacts": {
            **paths,
            "runs": str(out / "runs"),
            "eval": str(out / "eval"),
            "hf_export": answer["export_dir"],
        },
    }
    (out / "demo_summary.json").write_text(json.dumps(result, indent=2, default=str))
    log("")
    log(summary_table(rows))
    log(f"\ndata generation: {data_seconds:.0f} s; total: {result['seconds']:.0f} s")
    log(f"eval overall accuracy {summary['overall']:.1f}% (a tiny model trained for minutes)")
    log(
        f"transformers reload answered {answer['transformers_answer']!r} "
        f"(gold {answer['gold_answer']!r}); identical to ours: {answer['token_identical']}"
    )
    log("artefacts:")
    for name, path in result["artefacts"].items():
        log(f"  {name}: {path}")
    return result
