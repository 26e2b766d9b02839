"""Load `configs/x.py[:arg]` (a module with get_config()) and apply `--config.a.b=value` overrides.

Same syntax as ml_collections' config_flags, without absl: the value is parsed with
ast.literal_eval (numbers, booleans, lists, tuples, None) and falls back to a plain string; the
override must name an existing field, and its type must fit the field's.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import ml_collections

from mathjax_vl.errors import ConfigError, ConfigKeyError, ConfigTypeError


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    path, _, arg = spec.partition(":")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"config file {file} does not exist (expected configs/x.py[:arg])")
    name = f"_mathjax_vl_config_{abs(hash(str(file.absolute())))}"
    module_spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {file} defines no get_config()")
    config = module.get_config(arg) if arg else module.get_config()
    for item in overrides:
        apply_override(config, item)
    return config


def parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
    """Apply one `config.a.b=value` (leading '--' and 'config.' optional)."""
    text = item[2:] if item.startswith("--") else item
    if "=" not in text:
        raise ConfigError(f"override {item!r} must look like --config.key=value")
    key, raw = text.split("=", 1)
    if key.startswith("config."):
        key = key[len("config.") :]
    parts = key.split(".")
    node = config
    for i, part in enumerate(parts[:-1]):
        if part not in node:
            raise ConfigKeyError(
                f"override {item!r}: no field {'.'.join(parts[: i + 1])!r} in config"
            )
        node = node[part]
    leaf = parts[-1]
    if leaf not in node:
        raise ConfigKeyError(f"override {item!r}: no field {key!r} in config")
    value = parse_value(raw)
    current = node[leaf]
    if isinstance(current, str) and not isinstance(value, str):
        value = raw
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, (list, tuple)) and isinstance(value, (list, tuple)):
        value = type(current)(value)
    if isinstance(current, ml_collections.ConfigDict) and isinstance(value, dict):
        value = ml_collections.ConfigDict(value)
    try:
        node[leaf] = value
    except TypeError as err:
        raise ConfigTypeError(f"override {item!r}: {err}") from err


_RUN_CONFIG_TEMPLATE = '''"""The resolved config of the run in this directory ({note}).

Values in config.json beside this file.

    mathjax-vl train --config {path} --workdir {workdir}
    mathjax-vl export-hf --train-dir {workdir} --out DIR
"""

import json
import os

import ml_collections


def get_config(arg: str = ""):
    with open(os.path.join(os.path.dirname(__file__), "config.json")) as f:
        return ml_collections.ConfigDict(json.load(f))
'''


def save_run_config(config: ml_collections.ConfigDict, workdir: str | Path, note: str) -> str:
    """Writes config.json + a loadable config.py into a run dir; returns the config.py path.

    The run dir then holds everything needed to resume, evaluate or export it without the
    original config file and its command-line overrides.
    """
    workdir = str(workdir)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f, indent=2, default=list)
    path = os.path.join(workdir, "config.py")
    with open(path, "w") as f:
        f.write(_RUN_CONFIG_TEMPLATE.format(note=note, path=path, workdir=workdir))
    return path
