r"""`mathjax-vl datagen`: generate a verified dataset of math figures and problems.

    mathjax-vl datagen --recipe {puma_kl,mathverse_eval,contrastive,multimodal_sft,image_to_code} \
        --n N --seed S --workers W --out DIR [--preview FILE.png] [--split SPLIT] \
        [--families plane_geometry,functions] [--timeout-s 10 (CPU s)] [--memory-limit-gb 2]
        [--unsafe-no-isolation]
        [--runner beam [--beam-runner DirectRunner] [--beam-options "--project=p ..."]
         [--beam-item-factor 1.25] [--beam-item-slack 32] [--beam-items-per-task 16W]]

A training recipe is named by the objective it feeds (the same name as `task.name`); the older
names puma_pairs, captions, instruct and image_code still work. Writes a TFDS ArrayRecord
dataset at DIR/<recipe>/1.0.0/ (with datagen_report.json: rejections
per reason) and, with --preview, a contact sheet of samples (figure, version, question, answer).
The output is determined by --seed (and the code version): the same seed gives the same dataset
for any --workers. Evaluation recipes default to the `test` split, whose problems never occur in
`train` (content-hash partition, see mathjax_vl/datagen/quality.py).

--runner beam runs the same generators as an Apache Beam pipeline written by TFDS's Beam support
(mathjax_vl/datagen/beam.py; needs the `beam` extra): DirectRunner locally, any Beam runner on a
cluster (--beam-runner DataflowRunner --beam-options "--project=P --region=R
--temp_location=gs://B/tmp"). Same dataset for the same --seed and --n; --workers is then the
sandbox pool size per DoFn instance.

Every figure program is rendered in the OS sandbox (mathjax_vl/datagen/sandbox.py: its own
process in user/PID/network/mount/IPC namespaces, read-only interpreter and fonts, no network,
empty environment, rlimits, seccomp; results come back as data only). If the namespaces cannot be
created, the command fails (exit 2); --unsafe-no-isolation runs without them, with a warning.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time


def register(subparsers) -> None:
    from mathjax_vl.datagen.engine import RECIPE_ALIASES, RECIPES

    p = subparsers.add_parser(
        "datagen",
        help="Generate math-figure datasets (PUMA pairs, MathVerse versions, captions, ...).",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipe", required=True, choices=[*RECIPES, *RECIPE_ALIASES])
    p.add_argument("--n", type=int, required=True, help="accepted problems to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--preview", default=None, help="write a contact sheet PNG here")
    p.add_argument("--preview-count", type=int, default=12)
    p.add_argument("--split", default=None, help="train | validation | test (default by recipe)")
    p.add_argument(
        "--families",
        default=None,
        help="comma-separated family names (default all); family/subtype narrows to one subtype",
    )
    p.add_argument("--timeout-s", type=float, default=10.0, help="CPU seconds per figure program")
    p.add_argument("--memory-limit-gb", type=float, default=2.0, help="per worker address space")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--unsafe-no-isolation",
        action="store_true",
        help="render figure programs WITHOUT OS namespaces (prints a warning)",
    )
    p.add_argument(
        "--runner", choices=("local", "beam"), default="local", help="local process pool or Beam"
    )
    p.add_argument("--beam-runner", default="DirectRunner", help="Beam runner (--runner beam)")
    p.add_argument(
        "--beam-options", default="", help='Beam pipeline args in one string, e.g. "--project=p"'
    )
    p.add_argument(
        "--beam-item-factor",
        type=float,
        default=1.25,
        help="items computed = n * this + slack (headroom for rejections: Beam cannot grow its "
        "input while it runs)",
    )
    p.add_argument("--beam-item-slack", type=int, default=32, help="see --beam-item-factor")
    p.add_argument(
        "--beam-items-per-task",
        type=int,
        default=None,
        help="indices per Beam element (default 16 x --workers)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mathjax_vl.datagen import engine
    from mathjax_vl.datagen.families import resolve
    from mathjax_vl.datagen.preview import write_contact_sheet
    from mathjax_vl.datagen.sandbox import SandboxConfig

    families = None
    if args.families:
        families = tuple(name.strip() for name in args.families.split(",") if name.strip())
        for entry in families:
            try:
                resolve(entry)
            except KeyError as err:
                print(f"datagen: --families: {err.args[0]}", file=sys.stderr)
                return 2
    config = engine.DatagenConfig(
        recipe=args.recipe,
        n=args.n,
        seed=args.seed,
        workers=args.workers,
        split=args.split,
        families=families,
        sandbox=dataclasses.replace(
            SandboxConfig(),
            timeout_s=args.timeout_s,
            memory_limit_bytes=int(args.memory_limit_gb * 1024**3),
            unsafe_no_isolation=args.unsafe_no_isolation,
        ),
        progress=not args.no_progress,
    )
    if not args.unsafe_no_isolation:
        from mathjax_vl.datagen.isolation import IsolationError, resolve_mode

        try:  # fail before any work on a machine without namespaces
            resolve_mode(config.sandbox.isolation)
        except IsolationError as exc:
            print(f"datagen: {exc}", file=sys.stderr)
            return 2
    if args.runner == "beam":
        return _run_beam(args, config)
    start = time.perf_counter()
    dataset_dir, result = engine.generate_dataset(config, args.out)
    seconds = time.perf_counter() - start
    print(
        f"datagen {args.recipe}: {result.records_written} records from {result.accepted} problems "
        f"in {seconds:.1f} s with {args.workers} worker(s) -> {dataset_dir}"
    )
    print(result.report())
    if args.preview:
        shown = write_contact_sheet(result.previews, args.preview, count=args.preview_count)
        print(f"preview: {shown} samples -> {args.preview}")
    return 0


def _run_beam(args: argparse.Namespace, config) -> int:
    from mathjax_vl.datagen import beam

    if args.preview:
        print(
            "datagen: --preview needs the local runner (previews are not collected by the Beam "
            "pipeline); run a small --n locally for a contact sheet",
            file=sys.stderr,
        )
        return 2
    beam_config = beam.BeamConfig(
        runner=args.beam_runner,
        options=tuple(shlex.split(args.beam_options)),
        item_factor=args.beam_item_factor,
        item_slack=args.beam_item_slack,
        items_per_task=args.beam_items_per_task,
    )
    start = time.perf_counter()
    try:
        dataset_dir, report = beam.generate_dataset_beam(config, args.out, beam_config)
    except beam.ShortDatasetError as exc:
        print(f"datagen: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    print(
        f"datagen {args.recipe} (beam, {args.beam_runner}): {report['records']} records from "
        f"{report['accepted_items']} problems in {seconds:.1f} s -> {dataset_dir}"
    )
    print(beam.format_report(report))
    return 0
