"""The model registry: every architecture declares itself here once, from its own module.

An `Architecture` names a kind ("qwen2", "llama", "siglip_vision", "llava", ...), its role
(decoder, tower, projector, composite, dual_encoder), its config dataclass and its Flax module,
where it sits inside a composite model (`scope`: the VLM's "language_model" / "vision_tower" /
"multi_modal_projector"), and for towers the image preprocessing its HF processor applies.
Every "which kind is this?" question in the library is a lookup here:

    spec = registry.get("mistral")            # unknown -> KeyError listing the registered kinds
    spec = registry.spec_of(cfg)              # from a config dataclass instance
    module = registry.build(cfg)              # the Flax module for a config
    registry.kinds("decoder")                 # ("llama", "mistral", "qwen2", "qwen3")

HF names and conversions live one layer up, in mathjax_vl.hf.registry, keyed by these kinds.
Adding an architecture = one module calling `register(...)` at import, plus its name in
BUILTIN_MODULES (docs/extending.md).
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Callable
from typing import Any

ROLES = ("decoder", "tower", "projector", "composite", "dual_encoder")

# Modules that register the built-in architectures (imported on the first lookup).
BUILTIN_MODULES = (
    "mathjax_vl.models.qwen2",
    "mathjax_vl.models.qwen3",
    "mathjax_vl.models.llama",
    "mathjax_vl.models.mistral",
    "mathjax_vl.models.siglip",
    "mathjax_vl.models.clip",
    "mathjax_vl.models.sam",
    "mathjax_vl.models.projectors",
    "mathjax_vl.models.vlm",
    "mathjax_vl.models.internvit",
    "mathjax_vl.models.internvl",
    "mathjax_vl.models.deepseek_vl",
)


class UnknownKindError(KeyError):
    """A kind (or config class) nobody registered; the message lists the registered ones."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One architecture's declaration (see the module docstring)."""

    kind: str
    role: str
    config_cls: type
    module_cls: type  # a flax.linen.Module taking the config as its only field
    scope: str | None = None  # its sub-tree name inside a composite (None: top level only)
    aliases: tuple[str, ...] = ()  # other names accepted for `kind` (e.g. train-config names)
    # dummy init inputs (args, kwargs) for abstract params; None -> token ids [1, 4]
    init_inputs: Callable[[Any], tuple[tuple, dict]] | None = None
    # towers: how images are resized for it ("squash" | "shortest_edge_crop"), as its HF processor
    resize_mode: str | None = None
    # set when one config class serves several kinds and names its kind in this field
    # (ProjectorConfig.kind); spec_of then reads the field
    kind_field: str | None = None
    description: str = ""

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"architecture {self.kind!r}: role {self.role!r} not in {ROLES}")


_REGISTRY: dict[str, Architecture] = {}
_ALIASES: dict[str, str] = {}
_BY_CONFIG: dict[type, str] = {}
_loaded = False


def register(spec: Architecture) -> Architecture:
    """Adds an architecture; a kind, alias or config class registered twice is an error."""
    for name in (spec.kind, *spec.aliases):
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"model kind {name!r} is already registered")
    shared = spec.kind_field is not None and spec.config_cls in _BY_CONFIG
    if shared and _REGISTRY[_BY_CONFIG[spec.config_cls]].kind_field != spec.kind_field:
        raise ValueError(f"config class {spec.config_cls.__name__}: inconsistent kind_field")
    if spec.config_cls in _BY_CONFIG and not shared:
        raise ValueError(
            f"config class {spec.config_cls.__name__} already registered as "
            f"{_BY_CONFIG[spec.config_cls]!r}"
        )
    _REGISTRY[spec.kind] = spec
    for alias in spec.aliases:
        _ALIASES[alias] = spec.kind
    _BY_CONFIG.setdefault(spec.config_cls, spec.kind)
    return spec


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for name in BUILTIN_MODULES:
            importlib.import_module(name)


def kinds(role: str | None = None) -> tuple[str, ...]:
    """Registered kinds (of one role), sorted."""
    _ensure_loaded()
    return tuple(sorted(k for k, s in _REGISTRY.items() if role is None or s.role == role))


def _listing(role: str | None) -> str:
    names = kinds(role)
    aliases = sorted(a for a, k in _ALIASES.items() if role is None or _REGISTRY[k].role == role)
    return f"{list(names)}" + (f" (aliases {aliases})" if aliases else "")


def get(kind: str, role: str | None = None) -> Architecture:
    """The architecture registered as `kind` (or an alias); `role` restricts the search."""
    _ensure_loaded()
    name = _ALIASES.get(kind, kind)
    spec = _REGISTRY.get(name)
    if spec is None or (role is not None and spec.role != role):
        what = f"{role} kind" if role else "model kind"
        raise UnknownKindError(f"unknown {what} {kind!r}; registered: {_listing(role)}")
    return spec


def spec_of(cfg: Any) -> Architecture:
    """The architecture of a config dataclass instance."""
    _ensure_loaded()
    kind = _BY_CONFIG.get(type(cfg))
    if kind is None:
        raise UnknownKindError(
            f"config class {type(cfg).__name__} is not registered; registered: {_listing(None)}"
        )
    spec = _REGISTRY[kind]
    if spec.kind_field is not None:
        return get(getattr(cfg, spec.kind_field), spec.role)
    return spec


def kind_of(cfg: Any) -> str:
    return spec_of(cfg).kind


def build(cfg: Any, **kwargs: Any) -> Any:
    """The Flax module for a config (kwargs: flax module kwargs such as name=)."""
    return spec_of(cfg).module_cls(cfg, **kwargs)


def init_inputs(cfg: Any) -> tuple[tuple, dict]:
    """(args, kwargs) of a dummy `init` call that creates every parameter of `build(cfg)`."""
    spec = spec_of(cfg)
    if spec.init_inputs is not None:
        return spec.init_inputs(cfg)
    import jax.numpy as jnp

    return (jnp.zeros((1, 4), jnp.int32),), {}


def abstract_params(cfg: Any) -> Any:
    """Unboxed shapes/dtypes (ShapeDtypeStruct tree) of a fresh model's params, no allocation."""
    import flax.linen as nn
    import jax

    module = build(cfg)
    args, kwargs = init_inputs(cfg)
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, **kwargs))
    return nn.meta.unbox(shapes)["params"]


# ---- configs as plain data (checkpoint metadata, train configs) ------------------------------


def _field_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: no conversion hints
        return {}


def _wants_tuple(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_wants_tuple(a) for a in typing.get_args(tp))
    return False


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config's fields as JSON-able data (a composite's `to_dict` records its parts' kinds)."""
    if hasattr(cfg, "to_dict"):
        return cfg.to_dict()
    return dataclasses.asdict(cfg)


def config_from_dict(kind: str, d: dict[str, Any], role: str | None = None) -> Any:
    """Inverse of config_to_dict for `kind`: lists become tuples where the field is a tuple; an
    unknown field is an error naming it and the fields the config has."""
    spec = get(kind, role)
    cls = spec.config_cls
    if hasattr(cls, "from_dict"):
        return cls.from_dict(d)
    return flat_config(cls, d, spec.kind)


def flat_config(cls: type, d: dict[str, Any], what: str) -> Any:
    """cls(**d) for a flat config dataclass, lists -> tuples, unknown fields named."""
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{what} config: unknown field(s) {unknown}; fields are {sorted(names)}")
    kwargs = {}
    for k, v in d.items():
        tp = hints.get(k)
        if isinstance(v, dict) and isinstance(tp, type) and dataclasses.is_dataclass(tp):
            v = flat_config(tp, v, f"{what}.{k}")  # a nested part (a dual encoder's towers)
        elif isinstance(v, list) and _wants_tuple(tp):
            v = tuple(v)
        kwargs[k] = v
    return cls(**kwargs)
