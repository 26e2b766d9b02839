r"""`mathjax-vl eval`: generate answers to a benchmark with a model (or read precomputed ones),
extract and judge them by rule + math-verify (no paid API), write summary.json, items.jsonl,
responses.jsonl, report.md and accuracy.png under --out.

    mathjax-vl eval --benchmark mathverse --data testmini.json --image-root images/ \
        --model path/to/hf_llava_dir --out results/mathverse
    mathjax-vl eval --benchmark generic --data datasets/eval_set --model runs/stage3 \
        --train-config configs/puma_stage3.py --tokenizer tok/ --out results/gen
    mathjax-vl eval --benchmark mathverse --data testmini.json --responses answers.jsonl \
        --out results/rescored [--extractor-model path/to/local_instruct_model]
    mathjax-vl eval --benchmark mathv --data MATH-V/data/test.jsonl --responses answers.jsonl \
        --out results/mathv

Benchmarks: mathverse | mathvista | wemath | mathv (MATH-Vision test or testmini) | generic.
With --responses no image is read. --extractor-model makes MathVerse's step 1 (answer
extraction) with a local instruct model on the official few-shot prompt; step 2 stays rules.

--data: the official JSON / JSONL / parquet file, or a dataset directory of our EvalProblem
records (then scored with --benchmark's metrics). --responses: JSONL rows
{problem_id, version, response}; every problem needs one. Exit status 0 on success, 2 on bad
input (the message names the file / problem / key).

Scale and resume: --mesh shards the model over this host's devices (fsdp / tensor, the training
rules), --dtype bfloat16 halves its memory. Under jax.distributed (a TPU pod, SLURM, or
MATHJAX_VL_COORDINATOR=host:port MATHJAX_VL_NUM_PROCESSES=N MATHJAX_VL_PROCESS_ID=i) every
process takes a share of the problems. Responses are appended to --out/parts/ as batches finish;
rerunning the same command after a crash generates only the problems not answered yet, and the
report equals an uninterrupted run's (greedy decoding).
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model (or precomputed responses) on a math benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--benchmark", required=True, help="mathverse | mathvista | wemath | mathv | generic"
    )
    p.add_argument("--data", required=True, help="benchmark file or EvalProblem dataset dir")
    p.add_argument("--image-root", default=None, help="folder the file's image paths are in")
    p.add_argument("--split", default="test", help="split of a dataset dir (default test)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="HF dir (Llava / Qwen2) or a training run dir")
    source.add_argument("--responses", help="JSONL of {problem_id, version, response}")
    add_model_arguments(p)
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N problems")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--extractor-model",
        default=None,
        help="a local instruct model dir for MathVerse's step 1 (official few-shot extraction "
        "prompt); default: rule-based extraction",
    )
    p.add_argument("--extractor-max-new-tokens", type=int, default=64)
    p.set_defaults(func=run)


def build_extractor(args):
    """MathVerse's model-based step-1 extractor, or None (rule-based extraction)."""
    if not args.extractor_model:
        return None
    from mathjax_vl.eval.generation import GenerationConfig, GenerationEngine
    from mathjax_vl.eval.loading import load_model
    from mathjax_vl.eval.mathverse import ModelExtractor

    handle = load_model(args.extractor_model, dtype=args.dtype)
    config = GenerationConfig(
        max_new_tokens=args.extractor_max_new_tokens, batch_size=args.batch_size
    )
    return ModelExtractor(GenerationEngine(handle, config))


def add_model_arguments(p: argparse.ArgumentParser, max_new_tokens: int = 512) -> None:
    """Model loading and generation flags shared by eval and codify."""
    p.add_argument("--tokenizer", default=None, help="tokenizer dir (default: the model dir)")
    p.add_argument(
        "--train-config",
        default=None,
        help="for a training run: the stage's config (configs/x.py[:arg])",
    )
    p.add_argument(
        "--train-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override of --train-config, as in `train --config.KEY=VALUE` (repeatable)",
    )
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default newest)")
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--system-prompt", default=None, help="default: the chat template's own")
    p.add_argument(
        "--dtype",
        default="float32",
        help="parameter and compute dtype of the whole model (bfloat16: bf16 weights, "
        "activations and KV cache)",
    )
    p.add_argument(
        "--mesh",
        default=None,
        help="shard the model over this process's devices, as `compile --mesh`: e.g. "
        "fsdp=4,tensor=2 (one size may be -1); default one device. Several processes "
        "(jax.distributed: MATHJAX_VL_COORDINATOR / _NUM_PROCESSES / _PROCESS_ID, or a TPU pod) "
        "each take a share of the items",
    )


def build_mesh(args):
    """jax.distributed when the environment asks for it (as `train`), then the --mesh of this
    process's devices (None: one device)."""
    from mathjax_vl.train.distributed import maybe_initialize

    maybe_initialize(None)
    if not getattr(args, "mesh", None):
        return None
    from mathjax_vl.eval.sharded import GenerationMesh

    return GenerationMesh.create(args.mesh)


def build_engine(args):
    """ModelHandle + GenerationEngine from the shared flags."""
    from mathjax_vl.eval.generation import GenerationConfig, GenerationEngine
    from mathjax_vl.eval.loading import load_model

    handle = load_model(
        args.model,
        args.tokenizer,
        train_config=args.train_config,
        config_overrides=list(args.train_override),
        step=args.step,
        dtype=args.dtype,
        mesh=build_mesh(args),
    )
    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        system_prompt=args.system_prompt,
    )
    return GenerationEngine(handle, config)


def run(args) -> int:
    from mathjax_vl.data.records import RecordError
    from mathjax_vl.eval.evaluator import evaluate, load_problems, read_responses
    from mathjax_vl.eval.loading import ModelLoadError

    try:
        problems = load_problems(
            args.benchmark,
            args.data,
            args.image_root,
            args.split,
            args.limit,
            images=not args.responses,  # scoring precomputed responses needs no image
        )
        if args.responses:
            responses = read_responses(args.responses, problems)
            summary = evaluate(
                problems,
                args.benchmark,
                args.out,
                responses=responses,
                extractor=build_extractor(args),
                progress=not args.no_progress,
            )
        else:
            engine = build_engine(args)
            summary = evaluate(
                problems,
                args.benchmark,
                args.out,
                engine=engine,
                extractor=build_extractor(args),
                progress=not args.no_progress,
            )
    except (FileNotFoundError, KeyError, RecordError, ModelLoadError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2
    if summary is None:  # a process other than 0: its responses are in --out/parts/
        print(f"responses of this process written under {args.out}/parts; process 0 reports")
        return 0
    print(open(summary["files"]["markdown"]).read())
    print(json.dumps({k: summary["files"][k] for k in sorted(summary["files"])}, indent=1))
    return 0
