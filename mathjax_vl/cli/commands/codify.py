r"""`mathjax-vl codify`: MathCoder-VL's model-in-the-loop step over a folder of figures.

    mathjax-vl codify --model runs/figcodifier --train-config configs/x.py --tokenizer tok/ \
        --images figures/ --out datasets/codified --threshold 0.8 --workers 2 --timeout 10

An image-to-code model (prompt: mathjax_vl.datagen.codify.PYTHON_PROMPT after the image) writes a
program for every PNG in --images (sorted by name); each program runs in the sandbox
(mathjax_vl.datagen.sandbox), which guarantees:
  - isolation: its own process, forked fresh for that program, inside new user, PID, network,
    mount and IPC namespaces (bubblewrap, else util-linux unshare); it sees read-only only the
    interpreter, its packages, the fonts and mathjax_vl/, plus a private tmpfs working dir; no
    network, none of your environment variables, no capabilities. If the namespaces cannot be
    created the command fails (exit 2) instead of running unisolated; --unsafe-no-isolation
    runs without them, with a warning (your files and environment are then readable);
  - limits: --timeout CPU seconds (and a wall-clock limit), 2 GB address space, file size,
    open files and processes; every process it starts is killed when it ends;
  - refusals: fork/exec/sockets/ptrace kill it (seccomp); writes outside its dir, reads outside
    the files above, dir_fd tricks, ctypes and gc/frame hacks end it (audit hook). Such a
    program's outcome is `forbidden`; it is never kept;
  - data only: its render comes back as PNG bytes + JSON that this process validates; nothing
    it sends is unpickled or executed here.
Not covered: kernel exploits (the namespaces share the host kernel).
Programs whose render matches the input figure (ink F-score >= --threshold) become ImageCode
records written with
mathjax_vl.data.storage.write_dataset to --out (dataset name --name, split train). Every figure's
outcome (kept / below_threshold / timeout / syntax / exception / ...) goes to
--out/outcomes.jsonl and the counts are printed; a run where nothing passes writes no dataset and
says so. Exit status 0 when the run completed (whatever the outcomes), 2 on bad input.

Scale and resume (as `eval`): --mesh shards the model over this host's devices; under
jax.distributed every process codifies a share of the figures. Each batch's outcomes (and kept
programs) are appended to --out/parts/ when it finishes, so rerunning the same command after a
crash generates and renders only the figures not done yet; the dataset and outcomes.jsonl equal
an uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from mathjax_vl.cli.commands.eval import add_model_arguments

OUTCOMES_FILE = "outcomes.jsonl"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "codify",
        help="image -> code with a model, keep programs whose sandboxed render matches",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="image-to-code model: HF dir or training run")
    p.add_argument("--images", required=True, help="folder of .png figures")
    p.add_argument("--out", required=True, help="output directory for the ImageCode dataset")
    p.add_argument("--name", default="codified", help="dataset name (lower-case identifier)")
    p.add_argument("--threshold", type=float, default=0.8, help="minimum render similarity")
    p.add_argument("--workers", type=int, default=1, help="sandbox worker processes")
    p.add_argument("--timeout", type=float, default=10.0, help="CPU seconds per program")
    p.add_argument(
        "--unsafe-no-isolation",
        action="store_true",
        help="run the model's programs WITHOUT OS namespaces (prints a warning); only for "
        "machines without user namespaces and programs you trust",
    )
    add_model_arguments(p, max_new_tokens=1024)
    p.set_defaults(func=run)


def list_figures(folder: str) -> list[tuple[str, bytes]]:
    """(name, PNG bytes) for every .png directly in `folder`, sorted by name."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--images {folder}: not a directory")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(".png"))
    if not names:
        raise ValueError(f"--images {folder}: no .png files")
    figures = []
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            raise ValueError(f"{os.path.join(folder, name)}: not a PNG file")
        figures.append((os.path.splitext(name)[0], data))
    return figures


def make_generate(engine):
    """The `generate(list[png]) -> list[str]` callable codify() wants (eval.generation)."""
    from mathjax_vl.eval.generation import codify_generator

    return codify_generator(engine)


def build_generate(args):
    """(generate callable, the settings a resumed run must match)."""
    from mathjax_vl.cli.commands.eval import build_engine
    from mathjax_vl.eval.evaluator import generation_settings

    engine = build_engine(args)
    if not engine.handle.is_vlm:
        raise ValueError(
            f"--model {args.model}: codify needs a vision-language model, not a text decoder"
        )
    settings = {**generation_settings(engine), "threshold": args.threshold}
    return make_generate(engine), settings


def codify_resumable(figures, generate, executor, config, args, settings):
    """codify() over the figures not done in --out/parts/ (this process's share), one batch at a
    time, each batch's outcomes appended as it finishes; on process 0 the merged CodifyReport in
    figure order, None on the others (mathjax_vl.eval.shards)."""
    from mathjax_vl.data.records import ImageCode
    from mathjax_vl.datagen.codify import CodifyOutcome, CodifyReport, codify
    from mathjax_vl.eval.shards import Processes, run_items

    keys = [name for name, _ in figures]

    def work(indices, append):
        for start in range(0, len(indices), args.batch_size):
            batch = indices[start : start + args.batch_size]
            report = codify([figures[i] for i in batch], generate, executor, config, len(batch))
            codes = {r.id: r.code for r in report.records}
            append(
                [
                    {
                        "index": i,
                        "key": keys[i],
                        "status": o.status,
                        "similarity": o.similarity,
                        "error": o.error,
                        "code": codes.get(o.name),
                    }
                    for i, o in zip(batch, report.outcomes)
                ]
            )

    rows = run_items(keys, args.out, "codify", work, Processes.from_jax(), settings)
    if rows is None:
        return None
    outcomes, records = [], []
    for row, (name, png) in zip(rows, figures):
        outcomes.append(CodifyOutcome(name, row["status"], row["similarity"], row["error"]))
        if row["status"] == "kept":
            records.append(ImageCode(image=png, code=row["code"], language="python", id=name))
    return CodifyReport(records=records, outcomes=outcomes)


def run(args) -> int:
    from mathjax_vl.data.records import RecordError
    from mathjax_vl.data.storage import write_dataset
    from mathjax_vl.datagen.codify import CodifyConfig
    from mathjax_vl.datagen.sandbox import FigureExecutor, IsolationError, SandboxConfig
    from mathjax_vl.eval.loading import ModelLoadError

    try:
        if not 0.0 <= args.threshold <= 1.0:
            raise ValueError(f"--threshold must be in [0, 1], got {args.threshold}")
        if not args.name.isidentifier() or args.name.lower() != args.name:
            raise ValueError(f"--name must be a lower-case identifier, got {args.name!r}")
        target = os.path.join(args.out, args.name)
        if os.path.exists(target):
            raise ValueError(f"{target} already exists; choose another --out or --name")
        figures = list_figures(args.images)
        sandbox = SandboxConfig(
            workers=args.workers,
            timeout_s=args.timeout,
            unsafe_no_isolation=args.unsafe_no_isolation,
        )
        executor = FigureExecutor(sandbox)
        executor.start()  # before the model loads: a machine without namespaces fails fast
    except (FileNotFoundError, ValueError, RecordError, IsolationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        generate, settings = build_generate(args)
    except (FileNotFoundError, ValueError, RecordError, ModelLoadError) as err:
        executor.close()
        print(f"error: {err}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    with executor:
        try:
            report = codify_resumable(
                figures, generate, executor, CodifyConfig(threshold=args.threshold), args, settings
            )
        except ValueError as err:  # parts of another run in --out
            print(f"error: {err}", file=sys.stderr)
            return 2
    if report is None:  # a process other than 0: its outcomes are in --out/parts/
        print(f"outcomes of this process written under {args.out}/parts; process 0 reports")
        return 0
    with open(os.path.join(args.out, OUTCOMES_FILE), "w") as f:
        for outcome in report.outcomes:
            f.write(
                json.dumps(
                    {
                        "name": outcome.name,
                        "status": outcome.status,
                        "similarity": outcome.similarity,
                        "error": outcome.error,
                    }
                )
                + "\n"
            )
    counts = report.counts()
    print(f"{len(figures)} figures: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if report.records:
        path = write_dataset(report.records, args.out, args.name, split="train", kind="image_code")
        print(f"kept {len(report.records)} image-code records -> {path}")
    else:
        print(f"no program passed the threshold {args.threshold}; no dataset written")
    print(f"per-figure outcomes -> {os.path.join(args.out, OUTCOMES_FILE)}")
    return 0
