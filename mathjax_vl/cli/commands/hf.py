"""`mathjax-vl import-hf` / `mathjax-vl export-hf`: Hugging Face dirs <-> mathjax-vl checkpoints.

    mathjax-vl import-hf SRC_DIR OUT [--param-dtype float32|bfloat16] [--dtype ...]
        [--max-shard-size 5GB]
    mathjax-vl export-hf CKPT OUT [--tokenizer DIR] [--dtype bfloat16] [--max-shard-size 50GB]
    mathjax-vl export-hf --train-dir RUN_DIR --out OUT [--step N] [--train-config configs/x.py]
        [--train-override KEY=VALUE ...] [--tokenizer DIR] [--dtype bfloat16]
        [--max-shard-size 50GB]

import-hf reads a local HF directory of any architecture in mathjax_vl.hf.registry
(Qwen2/Qwen3/Llama/MistralForCausalLM, LlavaForConditionalGeneration with a SigLIP or CLIP tower
and any of those decoders, SiglipVisionModel, SiglipModel, CLIPModel, CLIPVisionModel; safetensors,
sharded or not, or pytorch_model.bin) and writes our checkpoint (mathjax_vl.hf.checkpoint):
    OUT/mathjax_vl_model.json   {"format_version": 2, "kind", "config", "source_dtype", ...}
    OUT/params*.safetensors     the params tree (flat keys a/b/c), sharded at --max-shard-size
plus the tokenizer / processor files found in SRC_DIR, so `generate` and `export-hf` find them.
Both commands stream: one tensor is read, mapped, cast and written at a time, so memory stays
near one block, not one model. Parameters keep the source dtype unless --param-dtype says
otherwise; the source dtype is recorded.
export-hf writes an HF directory loadable by `from_pretrained` (the same architectures),
shard by shard with an index like save_pretrained (--max-shard-size, default transformers'
50GB), in --dtype, else in the source dtype recorded at import (a one-line notice says so when
the params differ, e.g. a float32 master of a bfloat16 model), copying tokenizer/processor files
from --tokenizer (default: the checkpoint dir). A model with the Math-PUMA SwiGLU projector
is written as a Llava with remote code (hf.llava_swiglu: modeling_llava_swiglu.py + auto_map;
load with trust_remote_code=True).
With --train-dir it exports a training run instead (mathjax_vl.eval.export_run): the newest
complete checkpoint (or --step N), trainable + frozen params, the architecture from the stage
config (--train-config, default RUN_DIR/config.py as the demo writes); a decoder model.kind
(qwen2, qwen3, llama, mistral) -> its *ForCausalLM, vlm -> LlavaForConditionalGeneration
(SwiGLU projector: its remote-code form),
dual_encoder (CLIP loss) -> CLIPModel.
The two forms are exclusive.
Exit status 0 on success, 2 on bad input: one line naming the file and tensor (a truncated or
missing shard, a dtype the model cannot take, a shape mismatch); nothing is left in OUT.
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
    p.add_argument(
        "--param-dtype",
        default=None,
        help="parameter storage dtype (default: the source's, e.g. bfloat16 stays bfloat16)",
    )
    p.add_argument("--dtype", default="float32", help="compute dtype recorded in the config")
    p.add_argument(
        "--max-shard-size",
        default="5GB",
        help="shard the checkpoint's params.safetensors above this size (e.g. 5GB, 500MB)",
    )
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
    e.add_argument(
        "--dtype",
        default=None,
        help="dtype of the written tensors (default: the source dtype recorded at import)",
    )
    e.add_argument(
        "--max-shard-size",
        default=None,
        help="shard size, like save_pretrained's max_shard_size (default: transformers' 50GB)",
    )
    e.set_defaults(func=run_export)


def _check_out(path: str) -> None:
    if os.path.exists(path) and os.listdir(path):
        raise ValueError(f"output directory {path} exists and is not empty")


def _cleanup(out: str, existed: bool) -> None:
    """Removes what a failed command wrote into `out` (which was absent or empty)."""
    if not os.path.isdir(out):
        return
    if existed:
        for name in os.listdir(out):
            full = os.path.join(out, name)
            shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)
    else:
        shutil.rmtree(out)


def _param_dtype(requested: str | None, source: str | None) -> str:
    from mathjax_vl.models.precision import to_dtype

    if requested is not None:
        return requested
    try:
        to_dtype(source or "float32")
    except ValueError:
        return "float32"
    return source or "float32"


def run_import(args) -> int:
    """Streams SRC -> OUT tensor by tensor: mapped, cast to --param-dtype and written."""
    from mathjax_vl.hf import registry, streaming
    from mathjax_vl.hf.common import CheckpointReader, ConversionError
    from mathjax_vl.hf.llava import TOKENIZER_FILES

    existed, checked = os.path.isdir(args.out), False
    try:
        _check_out(args.out)
        checked = True
        registry.detect_kind(args.src)  # an unsupported architecture is named first
        source_dtype = CheckpointReader(args.src).source_dtype()
        param_dtype = _param_dtype(args.param_dtype, source_dtype)
        with streaming.lazy():
            kind, cfg, params = registry.load_hf(
                args.src, param_dtype=param_dtype, dtype=args.dtype
            )
        os.makedirs(args.out, exist_ok=True)
        from mathjax_vl.hf import checkpoint

        checkpoint.save(
            args.out,
            kind,
            registry.config_to_dict(kind, cfg),
            params,
            source_dtype=source_dtype,
            source=os.path.abspath(args.src),
            max_shard_size=args.max_shard_size,
        )
    except (ConversionError, ValueError) as e:
        if checked:  # only what this command wrote
            _cleanup(args.out, existed)
        print(f"import-hf: {e}", file=sys.stderr)
        return 2
    copied = []
    for name in TOKENIZER_FILES:
        if os.path.exists(os.path.join(args.src, name)):
            shutil.copyfile(os.path.join(args.src, name), os.path.join(args.out, name))
            copied.append(name)
    print(
        f"imported {kind} from {args.src} -> {args.out} (source dtype {source_dtype}, params "
        f"{param_dtype}; copied: {', '.join(copied) or 'none'})"
    )
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
            max_shard_size=args.max_shard_size,
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
    """Streams CKPT -> OUT: one tensor converted and cast at a time, written shard by shard."""
    from mathjax_vl.hf import registry, streaming
    from mathjax_vl.hf.common import ConversionError

    existed, checked = os.path.isdir(out), False
    try:
        _check_out(out)
        checked = True
        kind, cfg, params, meta = registry.open_any(args.ckpt)
        dtype = streaming.export_dtype(args.dtype, params, meta.get("source_dtype"), args.ckpt)
        params = streaming.cast_lazily(params, dtype)
        tok = args.tokenizer
        if tok is None and registry.is_checkpoint(args.ckpt):
            tok = args.ckpt
        with streaming.lazy(args.max_shard_size):
            files = registry.save_hf(kind, cfg, params, out, tokenizer_dir=tok)
    except (ConversionError, ValueError) as e:
        if checked:  # only what this command wrote
            _cleanup(out, existed)
        print(f"export-hf: {e}", file=sys.stderr)
        return 2
    print(f"exported {kind} from {args.ckpt} -> {out}: {', '.join(files)}")
    return 0
