"""Table-driven conversion between a flat HF state dict and our nested Flax params.

A converter is a list of `Leaf`s: one HF tensor name (with "{i}" for per-layer tensors, which
stack on our leading `layers` axis), our param path, and how the layout changes. The same table
drives import and export, so the two directions cannot drift apart, and the import checks every
HF tensor's shape against the one the config implies before touching it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from mathjax_vl.hf.common import ConversionError

# Layout kinds:
#   "linear": torch Linear weight [out, in] <-> kernel reshaped from [in, out]
#   "copy":   same values, reshaped (biases [out] <-> [heads, head_dim], norms, tables)
#   "conv":   Conv2d weight [D, C, p, p] <-> kernel [p*p*C, D] (rows ordered ph, pw, c)
KINDS = ("linear", "copy", "conv")


@dataclasses.dataclass(frozen=True)
class Leaf:
    hf_key: str  # may contain "{i}" (layer index)
    path: tuple[str, ...]  # path in our params tree
    kind: str
    hf_shape: tuple[int, ...]  # per-layer shape in the HF file
    num_layers: int | None = None  # set when hf_key has "{i}": stacked on our axis 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown leaf kind {self.kind!r}")
        if ("{i}" in self.hf_key) != (self.num_layers is not None):
            raise ValueError(f"leaf {self.hf_key}: '{{i}}' requires num_layers and vice versa")

    def keys(self) -> list[str]:
        if self.num_layers is None:
            return [self.hf_key]
        return [self.hf_key.format(i=i) for i in range(self.num_layers)]


def prefixed(leaves: Iterable[Leaf], hf_prefix: str = "", path_prefix: tuple[str, ...] = ()):
    """The same leaves under an HF key prefix and a params sub-tree."""
    return [
        dataclasses.replace(lf, hf_key=hf_prefix + lf.hf_key, path=path_prefix + lf.path)
        for lf in leaves
    ]


def _to_ours(w: np.ndarray, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    if kind == "linear":
        return np.ascontiguousarray(w.T).reshape(shape)
    if kind == "conv":
        d, c, p, q = w.shape
        return np.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(p * q * c, d)
    return w.reshape(shape)


def _to_hf(x: np.ndarray, kind: str, hf_shape: tuple[int, ...]) -> np.ndarray:
    if kind == "linear":
        out, inp = hf_shape
        return np.ascontiguousarray(x.reshape(inp, out).T)
    if kind == "conv":
        d, c, p, q = hf_shape
        return np.ascontiguousarray(x.reshape(p, q, c, d).transpose(3, 2, 0, 1))
    return np.array(x.reshape(hf_shape), order="C")  # ascontiguousarray would make 0-d 1-d


def _our_shape(lf: Leaf) -> tuple[int, ...]:
    """Our per-layer shape implied by the HF shape, for the layout-free kinds."""
    if lf.kind == "conv":
        d, c, p, q = lf.hf_shape
        return (p * q * c, d)
    return lf.hf_shape


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def _get(tree: Mapping, path: tuple[str, ...]) -> Any:
    node = tree
    for i, k in enumerate(path):
        if not isinstance(node, Mapping) or k not in node:
            raise ConversionError(f"params have no entry {'/'.join(path[: i + 1])}")
        node = node[k]
    return node


class TensorSource:
    """Shape-checked `take(key, shape)` over a CheckpointReader or a plain dict, plus "virtual"
    tensors derived from stored ones (e.g. q/k/v split out of a fused in_proj).
    `check` + `read(key, region)` are the streaming form of `take` (see hf.streaming)."""

    def __init__(self, base: Any, source: str = "state dict", virtual=None):
        self.base = base
        self.source = source
        self.virtual: dict[str, np.ndarray] = dict(virtual or {})

    def _reader(self, key: str) -> bool:
        return key not in self.virtual and hasattr(self.base, "take")

    def has(self, key: str) -> bool:
        return key in self.virtual or (
            self.base.has(key) if hasattr(self.base, "take") else key in self.base
        )

    def keys(self) -> list[str]:
        base = self.base.keys() if hasattr(self.base, "take") else list(self.base)
        return sorted(set(base) | set(self.virtual))

    def check(self, key: str, shape: tuple[int, ...], dtype: Any = None) -> None:
        """Raises unless `key` exists with `shape` and a dtype that can become `dtype`."""
        if self._reader(key):
            self.base.check(key, shape, dtype)
            return
        store = self.virtual if key in self.virtual else self.base
        if key not in store:
            raise ConversionError(f"missing tensor {key!r} in {self.source}")
        found = tuple(np.shape(store[key]))
        if found != tuple(shape):
            raise ConversionError(
                f"tensor {key!r} in {self.source}: expected shape {tuple(shape)}, found {found}"
            )
        if dtype is not None:
            from mathjax_vl.hf.common import dtype_problem
            from mathjax_vl.hf.safetensors_io import CODES

            code = CODES.get(np.dtype(store[key].dtype), str(store[key].dtype))
            problem = dtype_problem(code, dtype)
            if problem:
                raise ConversionError(f"tensor {key!r} in {self.source}: {problem}")

    def read(self, key: str, index: tuple[slice, ...] | None = None) -> np.ndarray:
        if self._reader(key):
            return self.base.read(key, index)
        w = np.asarray((self.virtual if key in self.virtual else self.base)[key])
        return w if index is None else w[index]

    def take(self, key: str, shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
        self.check(key, shape, dtype)
        return self.read(key)


def import_leaves(state: Any, leaves: Iterable[Leaf], param_shapes: Mapping) -> dict:
    """HF tensors -> nested params (numpy; streaming.LazyArrays inside streaming.lazy()).
    state: TensorSource, CheckpointReader or dict; param_shapes: our tree of shapes
    (abstract_params). Every key, shape and dtype is checked here, before anything is read;
    errors name key, file, shapes."""
    from mathjax_vl.hf import streaming

    src = state if isinstance(state, TensorSource) else TensorSource(state)
    params: dict = {}
    for lf in leaves:
        want = _get(param_shapes, lf.path)
        target, dtype = tuple(want.shape), np.dtype(want.dtype)
        per_layer = target[1:] if lf.num_layers is not None else target
        if (lf.num_layers is not None and target[:1] != (lf.num_layers,)) or _size(
            lf.hf_shape
        ) != _size(per_layer):
            raise ConversionError(
                f"tensor {lf.hf_key!r} {lf.hf_shape} -> params {'/'.join(lf.path)}: "
                f"expected shape {target}, which it does not fit"
            )
        for k in lf.keys():
            src.check(k, lf.hf_shape, dtype)
        layout = streaming.HFLayout(lf.kind, tuple(lf.hf_shape), tuple(per_layer))
        value = streaming.ImportedLeaf(
            src, lf.keys(), layout, target, dtype, stacked=lf.num_layers is not None
        )
        _set(params, lf.path, value if streaming.is_lazy() else value.read())
    return params


def _size(shape: Iterable[int]) -> int:
    out = 1
    for n in shape:
        out *= int(n)
    return out


def export_leaves(params: Mapping, leaves: Iterable[Leaf]) -> dict[str, np.ndarray]:
    """Nested params -> flat HF tensors (numpy, the params' dtype; inside streaming.lazy(),
    streaming.LazyArrays that convert one tensor when read)."""
    from mathjax_vl.hf import streaming

    lazy = streaming.is_lazy()
    out: dict[str, Any] = {}
    for lf in leaves:
        raw = _get(params, lf.path)
        value = streaming.as_lazy(raw) if lazy else np.asarray(raw)
        if lf.num_layers is None:
            if _size(value.shape) != _size(lf.hf_shape):
                raise ConversionError(
                    f"params {'/'.join(lf.path)}: shape {tuple(value.shape)} does not fit "
                    f"{lf.hf_key!r} {lf.hf_shape}"
                )
            out[lf.hf_key] = (
                streaming.ExportedTensor(value, lf.kind, lf.hf_shape)
                if lazy
                else _to_hf(value, lf.kind, lf.hf_shape)
            )
            continue
        if value.shape[0] != lf.num_layers:
            raise ConversionError(
                f"params {'/'.join(lf.path)}: expected {lf.num_layers} stacked layers, "
                f"found {value.shape[0]}"
            )
        for i, key in enumerate(lf.keys()):
            out[key] = (
                streaming.ExportedTensor(value[i], lf.kind, lf.hf_shape)
                if lazy
                else _to_hf(value[i], lf.kind, lf.hf_shape)
            )
    return out


def hf_keys(leaves: Iterable[Leaf]) -> set[str]:
    return {k for lf in leaves for k in lf.keys()}


def check_no_unexpected(
    state: Mapping[str, Any], leaves: Iterable[Leaf], source: str, ignore_prefixes=()
) -> list[str]:
    """Raises on HF tensors no leaf consumes (silently dropping weights would be wrong);
    returns the ignored keys (those under `ignore_prefixes`) so callers can report them."""
    known = hf_keys(leaves)
    ignored = sorted(k for k in state if k not in known and k.startswith(tuple(ignore_prefixes)))
    unexpected = sorted(k for k in state if k not in known and k not in ignored)
    if unexpected:
        shown = ", ".join(unexpected[:8]) + (" ..." if len(unexpected) > 8 else "")
        raise ConversionError(f"{len(unexpected)} unexpected tensor(s) in {source}: {shown}")
    return ignored


def find_prefix(keys: Iterable[str], suffix: str, source: str, contains: str = "") -> str:
    """The key prefix in front of `suffix` (e.g. "vision_tower." before
    "embeddings.patch_embedding.weight"), so old and new HF key layouts both import."""
    hits = [k[: -len(suffix)] for k in keys if k.endswith(suffix) and contains in k]
    if not hits:
        raise ConversionError(f"no tensor named '*{suffix}' in {source}")
    return min(hits, key=len)


def vit_encoder_leaves(
    hf_prefix: str, path: tuple[str, ...], hidden: int, mlp: int, num_layers: int
) -> list[Leaf]:
    """The pre-LN encoder shared by SigLIP and CLIP: `{hf_prefix}layers.{i}.*` <-> path/layers/*."""
    lin = lambda name, shape: Leaf(
        f"{hf_prefix}layers.{{i}}.{name}.weight",
        (*path, "layers", *name.split("."), "kernel"),
        "linear",
        shape,
        num_layers,
    )
    vec = lambda name, param, size: Leaf(
        f"{hf_prefix}layers.{{i}}.{name}.{param[0]}",
        (*path, "layers", *name.split("."), param[1]),
        "copy",
        (size,),
        num_layers,
    )
    out: list[Leaf] = []
    for norm in ("layer_norm1", "layer_norm2"):
        out += [vec(norm, ("weight", "scale"), hidden), vec(norm, ("bias", "bias"), hidden)]
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
        out += [lin(f"self_attn.{proj}", (hidden, hidden))]
        out += [vec(f"self_attn.{proj}", ("bias", "bias"), hidden)]
    out += [lin("mlp.fc1", (mlp, hidden)), vec("mlp.fc1", ("bias", "bias"), mlp)]
    out += [lin("mlp.fc2", (hidden, mlp)), vec("mlp.fc2", ("bias", "bias"), hidden)]
    return out


def layer_norm_leaves(hf_name: str, path: tuple[str, ...], size: int) -> list[Leaf]:
    return [
        Leaf(f"{hf_name}.weight", (*path, "scale"), "copy", (size,)),
        Leaf(f"{hf_name}.bias", (*path, "bias"), "copy", (size,)),
    ]


def linear_leaves(
    hf_name: str, path: tuple[str, ...], out_dim: int, in_dim: int, bias: bool
) -> list[Leaf]:
    leaves = [Leaf(f"{hf_name}.weight", (*path, "kernel"), "linear", (out_dim, in_dim))]
    if bias:
        leaves.append(Leaf(f"{hf_name}.bias", (*path, "bias"), "copy", (out_dim,)))
    return leaves


def abstract_params(module, *args, **kwargs) -> dict:
    """Shapes/dtypes of `module.init(rng, *args)["params"]`, unboxed, without allocating."""
    import flax.linen as nn
    import jax

    def init():
        return module.init(jax.random.PRNGKey(0), *args, **kwargs)["params"]

    return nn.meta.unbox(jax.eval_shape(init))
