"""The `mathjax-vl` command: one subcommand per module in mathjax_vl/cli/commands/.

Each command module defines `register(subparsers) -> None`, which adds its parser and sets
`func=<callable(args) -> int>` as the parser default. Modules import heavy dependencies (jax, torch,
matplotlib) inside their functions so `mathjax-vl --help` stays fast.

Bad input (`mathjax_vl.errors.UserError` and the domain errors in USER_ERRORS) is printed as one
line, `error: ...`, with exit status 2; `--log-level DEBUG` (every subcommand has it) prints the
traceback too. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import traceback

from mathjax_vl.cli import commands
from mathjax_vl.errors import UserError

EXIT_USER_ERROR = 2
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def user_error_types() -> tuple[type[BaseException], ...]:
    """UserError plus the domain errors that already name their file / record / key (their
    modules are imported lazily so `--help` stays fast)."""
    from mathjax_vl.data.bad_records import BadRecordBoundError
    from mathjax_vl.data.records import RecordError

    types: list[type[BaseException]] = [
        UserError,
        RecordError,
        BadRecordBoundError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
    ]
    for module, name in (
        ("mathjax_vl.eval.loading", "ModelLoadError"),
        ("mathjax_vl.hf.common", "ConversionError"),
        ("mathjax_vl.hf.export_run", "RunExportError"),
    ):
        if module in sys.modules:  # only a command that used it can raise it
            types.append(getattr(sys.modules[module], name))
    return tuple(types)


def _add_log_level(parser: argparse.ArgumentParser) -> None:
    """Give every leaf (sub)command a --log-level flag (train keeps its own INFO default)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if subs:
        for sub in subs:
            for child in set(sub.choices.values()):
                _add_log_level(child)
        return
    if "--log-level" not in parser._option_string_actions:
        parser.add_argument(
            "--log-level",
            default="WARNING",
            choices=LOG_LEVELS,
            help="logging level; DEBUG also prints the traceback of an error",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mathjax-vl",
        description="Train, evaluate and export vision-language models for math in figures.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if not hasattr(module, "register"):
            raise RuntimeError(f"command module {module.__name__} defines no register(subparsers)")
        module.register(subparsers)
    _add_log_level(parser)
    return parser


def _one_line(err: BaseException) -> str:
    message = err.args[0] if isinstance(err, KeyError) and err.args else err
    return str(message).strip() or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = getattr(args, "log_level", "WARNING")
    logging.getLogger().setLevel(getattr(logging, level))
    try:
        return int(args.func(args) or 0)
    except user_error_types() as err:
        if level == "DEBUG":
            traceback.print_exc()
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
