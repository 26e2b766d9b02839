"""`mathjax-vl train --config configs/x.py[:arg] --workdir DIR [--config.key=value ...]`.

Runs (or resumes) one stage with the one trainer. Exit status: 0 when the run finished or was
preempted (SIGTERM: a checkpoint was saved); 2 on bad input (a one-line message naming the file,
key or value; --log-level DEBUG adds the traceback), e.g. a config whose model differs from the
run already in --workdir, or a --workdir another trainer holds; 3 when a non-finite
loss/gradient stopped it; 4 when another process of a multi-process run died (restart them all
to resume from the last complete checkpoint).
"""

from __future__ import annotations

import argparse
import sys

EXIT_NONFINITE = 3


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or resume a stage from an ml_collections config",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="configs/x.py or configs/x.py:arg")
    p.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl, tensorboard/")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    enable_config_overrides(p)
    p.set_defaults(func=run)


class _OverrideParser(argparse.ArgumentParser):
    """Collects `--config.key=value` overrides into args.config_overrides before argparse sees
    them (argparse cannot declare options for arbitrary config keys)."""

    def parse_known_args(self, args=None, namespace=None):
        rest, overrides = split_overrides(list(sys.argv[1:] if args is None else args))
        namespace, extras = super().parse_known_args(rest, namespace)
        namespace.config_overrides = [*getattr(namespace, "config_overrides", []), *overrides]
        return namespace, extras


def enable_config_overrides(parser: argparse.ArgumentParser) -> None:
    """Make a (sub)parser accept ml_collections-style `--config.a.b=v` overrides."""
    parser.__class__ = _OverrideParser


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate `--config.a.b=v` (or `--config.a.b v`) overrides from ordinary arguments."""
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config.") and "=" in arg:
            overrides.append(arg)
        elif arg.startswith("--config."):
            if i + 1 >= len(argv):
                print(f"error: override {arg} has no value (expected {arg}=VALUE)", file=sys.stderr)
                raise SystemExit(2)
            overrides.append(f"{arg}={argv[i + 1]}")
            i += 1
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def run(args) -> int:
    import logging

    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from mathjax_vl.train import guards, peer_watch
    from mathjax_vl.train.config_loader import load_config
    from mathjax_vl.train.trainer import Trainer

    config = load_config(args.config, getattr(args, "config_overrides", []))
    try:
        summary = Trainer(config, args.workdir).run()
    except guards.NonFiniteError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_NONFINITE
    except peer_watch.PeerLostError as err:  # exits at once: no shutdown barrier with the dead
        if args.log_level == "DEBUG":
            import traceback

            traceback.print_exc()
        peer_watch.exit_now(str(err))
    print(
        f"{summary['status']} at step {summary['step']}; last checkpoint: "
        f"{summary['last_checkpoint']}; skipped steps: {summary['skipped_steps']}; "
        f"useful tokens: {summary['useful_tokens']} of {summary['computed_tokens']} computed "
        f"({summary['useful_fraction']:.3f})"
    )
    return 0
