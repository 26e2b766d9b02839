"""`mathjax-vl data import`: public data formats -> a TFDS record dataset (ArrayRecord).

FORMAT: puma | llava | mminstruct | mathverse | caption | code | records | parquet | auto | folder
(see mathjax_vl/data/importers.py for each row schema).

    mathjax-vl data import SRC --format FORMAT --out DIR [--name NAME] [--split train] \
        [--image-root DIR] [--on-bad-record error|skip] [--max-skipped-fraction 0.01]

SRC is a .json/.jsonl/.parquet file, a directory of such files, or (for `folder`) a directory of
images with same-stem sidecars (.txt caption, .py / .tex / .tikz code). Relative image paths are
resolved against --image-root (default: the data file's directory). With `--on-bad-record skip`
bad rows are counted per reason and reported; the import fails if the skipped fraction exceeds
--max-skipped-fraction, and then leaves no dataset behind (it is written to a staging directory
and moved to OUT/NAME only after the check).
"""

from __future__ import annotations

import argparse
import os

from mathjax_vl.cli.commands.tokenizer import _subgroup


def register(subparsers) -> None:
    from mathjax_vl.data.importers import FORMATS

    group = _subgroup(subparsers, "data", "Data tools: import public formats into datasets.")
    p = group.add_parser(
        "import",
        help="Import a public data format into a TFDS record dataset.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", help="data file, directory of data files, or image folder")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="output directory (dataset at OUT/NAME/1.0.0)")
    p.add_argument("--name", default=None, help="dataset name (default: the record kind)")
    p.add_argument("--split", default="train")
    p.add_argument("--image-root", default=None)
    p.add_argument("--on-bad-record", choices=("error", "skip"), default="error")
    p.add_argument("--max-skipped-fraction", type=float, default=0.01)
    p.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    import itertools
    import shutil
    import tempfile

    from mathjax_vl.data import importers, storage
    from mathjax_vl.data.bad_records import BadRecordConfig, BadRecordTracker
    from mathjax_vl.errors import UserError

    tracker = BadRecordTracker(
        BadRecordConfig(
            policy=args.on_bad_record,
            max_skipped_fraction=args.max_skipped_fraction,
            min_records_for_bound=0 if args.on_bad_record == "error" else 100,
        ),
        name=f"import {os.path.basename(os.path.normpath(args.src))}",
    )
    records = importers.import_source(args.format, args.src, args.image_root, on_error=tracker)
    try:
        first = next(records)
    except StopIteration:
        tracker.finalize()
        raise UserError(f"{args.src}: no usable records") from None
    name = args.name or first.kind
    final = os.path.join(args.out, name)
    if os.path.exists(final):
        raise UserError(f"{final} already exists; choose another --out or --name")
    # Write beside the destination and move it into place only once the bad-record bound holds,
    # so a failed import leaves no dataset that looks complete.
    os.makedirs(args.out, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".import-{name}-", dir=args.out)
    try:
        storage.write_dataset(itertools.chain([first], records), staging, name, args.split)
        report = tracker.finalize()
        os.replace(os.path.join(staging, name), final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(report)
    n = tracker.seen - tracker.skipped
    path = storage.find_dataset_dir(final)
    print(f"wrote {n} {first.kind} records ({args.split}) to {path}")
    return 0
