"""InternVL (HF `InternVLForConditionalGeneration`): InternViT -> pixel shuffle -> LayerNorm + MLP
projector -> any registered decoder (Qwen2, Llama / InternLM2). The registry's "internvl"
composite; MathCoder-VL-2B/8B and FigCodifier-8B are InternVL2 models.

It is the Llava composite (mathjax_vl.models.vlm) with two differences, so it subclasses it:
- image features: one hidden state of the tower (-1: the tower's last output), the class token
  dropped ("default"), then *pixel shuffle* by `downsample_ratio` (0.5): the [g, g] patch grid
  becomes [g/2, g/2] tokens of width 4D (HF's exact reshape/transpose order), so a 448 px tile at
  patch 14 gives 1024 -> 256 tokens;
- the projector ("internvl_mlp"): linear_2(act(linear_1(LayerNorm(x)))) with biases, eps 1e-5.

Dynamic resolution is data-side: an image becomes several 448 px tiles (plus a thumbnail), each
tile is one entry of `pixel_values` and fills `image_seq_length` (256) placeholder tokens, tiles
in order (HF masked_scatter), so the token count of an image is 256 x its tile count.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax

from mathjax_vl.models import logical_axes as ax
from mathjax_vl.models import registry
from mathjax_vl.models.layers import Dense
from mathjax_vl.models.precision import to_dtype
from mathjax_vl.models.projectors import ProjectorConfig, _features
from mathjax_vl.models.vit import LayerNorm, activation
from mathjax_vl.models.vlm import SELECT_STRATEGIES, VLM, VLMConfig

Array = jax.Array

PROJECTOR_KIND = "internvl_mlp"
PROJECTOR_LN_EPS = 1e-5  # torch nn.LayerNorm's default, what HF's projector uses


@dataclasses.dataclass(frozen=True)
class InternVLConfig(VLMConfig):
    vision_feature_layer: int = -1
    downsample_ratio: float = 0.5

    def __post_init__(self):
        registry.get(registry.kind_of(self.vision), "tower")
        registry.get(registry.kind_of(self.text), "decoder")
        if not isinstance(self.vision_feature_layer, int):
            raise ValueError(
                f"internvl: vision_feature_layer must be one int, got {self.vision_feature_layer}"
            )
        if self.vision_feature_select_strategy not in SELECT_STRATEGIES:
            raise ValueError(
                f"vision_feature_select_strategy {self.vision_feature_select_strategy!r} not in "
                f"{SELECT_STRATEGIES}"
            )
        r = self.shuffle_factor
        grid = round(self.vision.num_patches**0.5)
        if grid * grid != self.vision.num_patches or grid % r:
            raise ValueError(
                f"internvl: the tower's {self.vision.num_patches} patches are not a square grid "
                f"divisible by 1/downsample_ratio = {r}"
            )
        if self.vision_feature_select_strategy != "default" and self.vision.has_class_token:
            raise ValueError("internvl: pixel shuffle needs the class token dropped ('default')")
        if self.projector.kind != PROJECTOR_KIND:
            raise ValueError(
                f"internvl: projector kind must be {PROJECTOR_KIND!r}, got {self.projector.kind!r}"
            )
        want_in = self.vision.hidden_size * r * r
        if self.projector.input_dim != want_in:
            raise ValueError(
                f"projector input_dim {self.projector.input_dim} != vision hidden "
                f"{self.vision.hidden_size} x {r * r} (pixel shuffle {self.downsample_ratio})"
            )
        if self.projector.output_dim != self.text.hidden_size:
            raise ValueError(
                f"projector output_dim {self.projector.output_dim} != text hidden "
                f"{self.text.hidden_size}"
            )

    @property
    def shuffle_factor(self) -> int:
        """1 / downsample_ratio as an int (2 for InternVL's 0.5)."""
        r = round(1.0 / self.downsample_ratio)
        if abs(r * self.downsample_ratio - 1.0) > 1e-9:
            raise ValueError(f"internvl: downsample_ratio {self.downsample_ratio} is not 1/int")
        return r

    @property
    def image_seq_length(self) -> int:
        """Placeholder tokens per tile: (grid / r)^2 (256 for 448 px, patch 14, ratio 0.5)."""
        return self.vision.num_patches // self.shuffle_factor**2


def pixel_shuffle(x: Array, r: int) -> Array:
    """[B, g*g, C] patch features -> [B, (g/r)^2, C*r*r], HF InternVLModel.pixel_shuffle's order."""
    b, t, c = x.shape
    g = round(t**0.5)
    x = x.reshape(b, g, g // r, c * r)  # [B, g, g/r, rC]
    x = x.transpose(0, 2, 1, 3)  # [B, g/r, g, rC]
    x = x.reshape(b, g // r, g // r, c * r * r)  # [B, g/r, g/r, r^2 C]
    x = x.transpose(0, 2, 1, 3)
    return x.reshape(b, (g // r) ** 2, c * r * r)


class InternVLProjector(nn.Module):
    cfg: ProjectorConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.cfg
        dt = dict(dtype=to_dtype(cfg.dtype), param_dtype=to_dtype(cfg.param_dtype))
        x = LayerNorm(PROJECTOR_LN_EPS, name="layer_norm", **dt)(x)
        h = Dense((cfg.inner_dim,), (ax.EMBED,), (ax.MLP,), use_bias=True, name="linear_1", **dt)(x)
        h = activation(cfg.act)(h)
        h = nn.with_logical_constraint(h, (ax.BATCH, ax.PATCH, ax.MLP))
        return Dense(
            (cfg.output_dim,), (ax.MLP,), (ax.EMBED,), use_bias=True, name="linear_2", **dt
        )(h)


class InternVL(VLM):
    cfg: InternVLConfig

    def image_features(self, pixel_values: Array) -> Array:
        """pixel_values [N, S, S, C] tiles -> [N, image_seq_length, D_text]."""
        cfg = self.cfg
        out = self.vision_tower(pixel_values, feature_layers=cfg.feature_layers, use_head=False)
        x = out.last_hidden_state if cfg.vision_feature_layer == -1 else out.features[0]
        if cfg.vision_feature_select_strategy == "default":
            x = x[:, 1:]  # drop the class token: [N, g*g, D]
        x = pixel_shuffle(x, cfg.shuffle_factor)  # [N, (g/r)^2, r^2 D]
        x = nn.with_logical_constraint(x, (ax.BATCH, ax.PATCH, ax.EMBED))
        return self.multi_modal_projector(x)


registry.register(
    registry.Architecture(
        kind=PROJECTOR_KIND,
        role="projector",
        config_cls=ProjectorConfig,
        module_cls=InternVLProjector,
        scope="multi_modal_projector",
        kind_field="kind",
        init_inputs=_features,
        description="InternVL's LayerNorm + two-layer MLP (HF InternVLMultiModalProjector)",
    )
)
registry.register(
    registry.Architecture(
        kind="internvl",
        role="composite",
        config_cls=InternVLConfig,
        module_cls=InternVL,
        description="InternVL: InternViT tiles -> pixel shuffle -> LN+MLP -> any decoder",
    )
)
