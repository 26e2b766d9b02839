"""`mathjax-vl import-hf` / `mathjax-vl export-hf`: Hugging Face dirs <-> mathjax-vl checkpoints.

    mathjax-vl import-hf SRC_DIR OUT [--param-dtype float32|bfloat16] [--dtype ...]
    mathjax-vl export-hf CKPT OUT [--tokenizer DIR] [--dtype bfloat16]
    mathjax-vl export-hf --train-dir RUN_DIR --out OUT [--step N] [--train-config configs/x.py]
        [--train-override KEY=VALUE ...] [--tokenizer DIR] [--dtype bfloat16]

import-hf reads a local HF directory (Qwen2ForCausalLM, LlavaForConditionalGeneration with a
SigLIP or CLIP tower, SiglipVisionModel, SiglipModel, CLIPModel, CLIPVisionModel),
and writes our checkpoint format (mathjax_vl.hf.registry):
    OUT/mathjax_vl_model.json   {"format_version": 1, "kind": ..., "config": {...}}
    OUT/params/                 orbax StandardCheckpointer directory of the params pytree
plus the tokenizer / processor files found in SRC_DIR, so `generate` and `export-hf` find them.
export-hf writes an HF directory loadable by `from_pretrained` (Llava, Qwen2, SigLIP, CLIP),
copying tokenizer/processor files from --tokenizer (default: the checkpoint dir). A model with the
Math-PUMA SwiGLU projector cannot be exported as Llava: the command says so and writes nothing.
With --train-dir it exports a training run instead (mathjax_vl.eval.export_run): the newest
complete checkpoint (or --step N), trainable + frozen params, the architecture from the stage
config (--train-config, default RUN_DIR/config.py as the demo writes); model.kind qwen2 ->
Qwen2ForCausalLM, vlm -> LlavaForConditionalGeneration, dual_encoder (CLIP loss) -> CLIPModel.
The two forms are exclusive.
Exit status 0 on success, 2 on bad input (the message names the file / key / shapes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "import-hf",
        help="HF model dir -> mathjax-vl checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", help="local Hugging Face model directory")
    p.add_argument("out", help="output checkpoint directory (must not exist or be empty)")
    p.add_argument("--param-dtype", default="float32", help="parameter storage dtype")
    p.add_argument("--dtype", default="float32", help="compute dtype recorded in the config")
    p.set_defaults(func=run_import)

    e = subparsers.add_parser(
        "export-hf",
        help="mathjax-vl checkpoint or training run -> HF model dir",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument(
        "ckpt", nargs="?", help="checkpoint directory written by import-hf (or an HF dir)"
    )
    e.add_argument("out", nargs="?", help="output HF directory")
    e.add_argument("--train-dir", default=None, help="training run dir (`train --workdir`)")
    e.add_argument("--out", dest="out_dir", default=None, help="output HF dir (with --train-dir)")
    e.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    e.add_argument(
        "--train-config",
        default=None,
        help="the run's stage config configs/x.py[:arg] (default: TRAIN_DIR/config.py)",
    )
    e.add_argument(
        "--train-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override of the stage config, as in `train --config.KEY=VALUE` (repeatable)",
    )
    e.add_argument("--tokenizer", default=None, help="dir with tokenizer/processor files to copy")
    e.add_argument("--dtype", default=None, help="cast tensors on export (e.g. bfloat16)")
    e.set_defaults(func=run_export)


def _check_out(path: str) -> None:
    if os.path.exists(path) and os.listdir(path):
        raise ValueError(f"output directory {path} exists and is not empty")


def run_import(args) -> int:
    from mathjax_vl.hf import registry
    from mathjax_vl.hf.common import ConversionError
    from mathjax_vl.hf.llava import TOKENIZER_FILES

    try:
        _check_out(args.out)
        kind, cfg, params = registry.load_hf(
            args.src, param_dtype=args.param_dtype, dtype=args.dtype
        )
    except (ConversionError, ValueError) as e:
        print(f"import-hf: {e}", file=sys.stderr)
        return 2
    registry.save_checkpoint(args.out, kind, cfg, params)
    copied = []
    for name in TOKENIZER_FILES:
        if os.path.exists(os.path.join(args.src, name)):
            shutil.copyfile(os.path.join(args.src, name), os.path.join(args.out, name))
            copied.append(name)
    print(f"imported {kind} from {args.src} -> {args.out} (copied: {', '.join(copied) or 'none'})")
    return 0


def _export_form_error(args) -> str | None:
    """Why the arguments mix or miss the two export forms (None when they are consistent)."""
    run_only = [
        flag
        for flag, value in (
            ("--step", args.step is not None),
            ("--train-config", args.train_config is not None),
            ("--train-override", bool(args.train_override)),
        )
        if value
    ]
    if args.train_dir is not None:
        if args.ckpt is not None:
            return (
                f"give either CKPT OUT or --train-dir RUN_DIR --out OUT_DIR, not both (got "
                f"positional {' '.join(a for a in (args.ckpt, args.out) if a)!r} with --train-dir)"
            )
        if args.out_dir is None:
            return "--train-dir RUN_DIR needs --out OUT_DIR"
        return None
    if run_only:
        return f"{', '.join(run_only)} only apply with --train-dir RUN_DIR"
    if args.ckpt is None:
        return "give CKPT OUT (a model checkpoint) or --train-dir RUN_DIR --out OUT_DIR"
    if args.out is not None and args.out_dir is not None:
        return f"output dir given twice ({args.out!r} and --out {args.out_dir!r})"
    if args.out is None and args.out_dir is None:
        return f"no output dir for {args.ckpt}: give CKPT OUT"
    return None


def run_export(args) -> int:
    problem = _export_form_error(args)
    if problem is not None:
        print(f"export-hf: {problem}", file=sys.stderr)
        return 2
    if args.train_dir is not None:
        return _export_train_run(args)
    return _export_checkpoint(args, args.out if args.out is not None else args.out_dir)


def _export_train_run(args) -> int:
    from mathjax_vl.eval.export_run import export_run
    from mathjax_vl.hf.common import ConversionError

    out = args.out_dir
    try:
        _check_out(out)
        run, files = export_run(
            args.train_dir,
            out,
            train_config=args.train_config,
            overrides=args.train_override,
            step=args.step,
            tokenizer_dir=args.tokenizer,
            dtype=args.dtype,
        )
    except (ConversionError, ValueError) as e:
        if os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)
        print(f"export-hf: {e}", file=sys.stderr)
        return 2
    print(
        f"exported {run.kind} from {run.checkpoint_dir} step {run.step} (config "
        f"{run.train_config}) -> {out}: {', '.join(files)}"
    )
    return 0


def _export_checkpoint(args, out: str) -> int:
    import jax
    import numpy as np

    from mathjax_vl.hf import registry
    from mathjax_vl.hf.common import ConversionError
    from mathjax_vl.models.precision import to_dtype

    try:
        _check_out(out)
        kind, cfg, params = registry.load_any(args.ckpt)
        if args.dtype is not None:
            params = jax.tree.map(lambda w: np.asarray(w).astype(to_dtype(args.dtype)), params)
        tok = args.tokenizer
        if tok is None and registry.is_checkpoint(args.ckpt):
            tok = args.ckpt
        files = registry.save_hf(kind, cfg, params, out, tokenizer_dir=tok)
    except (ConversionError, ValueError) as e:
        if os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)
        print(f"export-hf: {e}", file=sys.stderr)
        return 2
    print(f"exported {kind} from {args.ckpt} -> {out}: {', '.join(files)}")
    return 0
