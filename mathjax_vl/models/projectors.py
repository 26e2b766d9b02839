"""Vision -> language projectors.

- "mlp": LLaVA's two-layer MLP, linear_2(act(linear_1(x))) with biases (HF
  `LlavaMultiModalProjector`; act = config `projector_hidden_act`, bias =
  `multimodal_projector_bias`). MAVIS and MathCoder-VL-style LLaVA models use it.
- "swiglu": Math-PUMA's aligner, down(act(gate(x)) * up(x)) without biases (act = GELU in the
  released code). It has no `transformers` equivalent, so it cannot be exported as Llava.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax

from mathjax_vl.models import logical_axes as ax
from mathjax_vl.models import registry
from mathjax_vl.models.layers import Dense
from mathjax_vl.models.precision import to_dtype
from mathjax_vl.models.vit import activation

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ProjectorConfig:
    kind: str = "mlp"
    input_dim: int = 1152  # vision hidden size x number of feature layers
    output_dim: int = 1536  # language model hidden size
    hidden_dim: int | None = None  # swiglu inner width; mlp: output_dim (LLaVA's choice)
    act: str = "gelu"
    use_bias: bool = True  # mlp only; swiglu is bias-free
    dtype: str = "float32"
    param_dtype: str = "float32"

    def __post_init__(self):
        if self.kind not in registry.kinds("projector"):
            raise ValueError(
                f"unknown projector kind {self.kind!r}; registered: "
                f"{list(registry.kinds('projector'))}"
            )
        activation(self.act)

    @property
    def inner_dim(self) -> int:
        return self.hidden_dim or self.output_dim

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProjectorConfig:
        return cls(**d)


class MLPProjector(nn.Module):
    cfg: ProjectorConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.cfg
        kw = dict(
            use_bias=cfg.use_bias, dtype=to_dtype(cfg.dtype), param_dtype=to_dtype(cfg.param_dtype)
        )
        h = Dense((cfg.inner_dim,), (ax.EMBED,), (ax.MLP,), name="linear_1", **kw)(x)
        h = activation(cfg.act)(h)
        h = nn.with_logical_constraint(h, (ax.BATCH, ax.PATCH, ax.MLP))
        return Dense((cfg.output_dim,), (ax.MLP,), (ax.EMBED,), name="linear_2", **kw)(h)


class SwiGLUProjector(nn.Module):
    cfg: ProjectorConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.cfg
        kw = dict(use_bias=False, dtype=to_dtype(cfg.dtype), param_dtype=to_dtype(cfg.param_dtype))
        gate = Dense((cfg.inner_dim,), (ax.EMBED,), (ax.MLP,), name="gate_proj", **kw)(x)
        up = Dense((cfg.inner_dim,), (ax.EMBED,), (ax.MLP,), name="up_proj", **kw)(x)
        h = activation(cfg.act)(gate) * up
        h = nn.with_logical_constraint(h, (ax.BATCH, ax.PATCH, ax.MLP))
        return Dense((cfg.output_dim,), (ax.MLP,), (ax.EMBED,), name="down_proj", **kw)(h)


def make_projector(cfg: ProjectorConfig, name: str | None = None) -> nn.Module:
    return registry.build(cfg, name=name)


def _features(c: ProjectorConfig):
    import jax.numpy as jnp

    return ((jnp.zeros((1, 1, c.input_dim), jnp.float32),), {})


for _kind, _cls, _what in (
    ("mlp", MLPProjector, "LLaVA's two-layer MLP (HF LlavaMultiModalProjector)"),
    ("swiglu", SwiGLUProjector, "Math-PUMA's bias-free SwiGLU aligner (no HF equivalent)"),
):
    registry.register(
        registry.Architecture(
            kind=_kind,
            role="projector",
            config_cls=ProjectorConfig,
            module_cls=_cls,
            scope="multi_modal_projector",
            kind_field="kind",
            init_inputs=_features,
            description=_what,
        )
    )
