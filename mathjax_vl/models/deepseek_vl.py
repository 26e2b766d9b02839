"""DeepSeek-VL (HF `DeepseekVLForConditionalGeneration`) and its hybrid
(`DeepseekVLHybridForConditionalGeneration`, the architecture of DeepSeek-VL-7B and of
Math-PUMA_DeepSeek-Math-VL-7B).

Low resolution: a SigLIP tower; its post-LayerNorm last hidden state, every token (576 at
384 px / 16). DeepSeek-VL alone: aligner linear2(gelu(linear1(x))) into the Llama decoder.

Hybrid, high resolution: a SAM-B encoder at 1024 px. Its neck output and the neck_hd(output of
the first global-attention block) each go through the same downsampler: bilinear resize of the
[64, 64] grid to 4 * s (s = the SigLIP grid side; align_corners=False), two 3x3 stride-2 convs
(C -> 2C -> 4C, no bias), giving an s x s grid like SigLIP's; high = main + alpha * global
(alpha a learned scalar, zero at init). Aligner: proj(gelu(concat[high_proj(high), low_proj(low)]))
with each half of the text width. Features replace the image-token embeddings in order, one run of
`image_seq_length` (= s * s) tokens per image, as the Llava composite (models.vlm).

Inputs: `pixel_values` [N, h, h, 3] for SigLIP and, for the hybrid, `high_res_pixel_values`
[N, H, H, 3] for SAM, both NHWC and normalised (mathjax_vl.data.tower_images.preprocess_deepseek).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mathjax_vl.models import logical_axes as ax
from mathjax_vl.models import registry
from mathjax_vl.models.decoder import DecoderConfig, DecoderOutput, KVCache
from mathjax_vl.models.layers import Dense, logical_param
from mathjax_vl.models.precision import to_dtype
from mathjax_vl.models.sam import Conv, Neck, SamVisionConfig
from mathjax_vl.models.siglip import SiglipVisionConfig
from mathjax_vl.models.vit import activation
from mathjax_vl.models.vlm import check_image_tokens, scatter_image_features

Array = jax.Array
HYBRID, PLAIN = "deepseek_vl_hybrid", "deepseek_vl"


@dataclasses.dataclass(frozen=True)
class DeepseekVLConfig:
    vision: SiglipVisionConfig
    text: DecoderConfig
    image_token_id: int = 100015
    high_res: SamVisionConfig | None = None  # set: the hybrid
    aligner_act: str = "gelu"
    # the low-res view's PIL filter (HF processor `resample`; DeepSeek's released processors
    # use bilinear, transformers' class default is bicubic)
    low_res_resample: str = "bicubic"
    dtype: str = "float32"  # aligner and downsampler compute / param dtypes
    param_dtype: str = "float32"

    def __post_init__(self):
        registry.get(registry.kind_of(self.text), "decoder")
        activation(self.aligner_act)
        if self.high_res is not None and self.text.hidden_size % 2:
            raise ValueError(f"hybrid aligner: text hidden {self.text.hidden_size} must be even")

    @property
    def kind(self) -> str:
        return HYBRID if self.high_res is not None else PLAIN

    @property
    def grid(self) -> int:
        return self.vision.image_size // self.vision.patch_size

    @property
    def image_seq_length(self) -> int:
        return self.grid**2

    @property
    def image_inputs(self) -> dict[str, tuple[int, int, int]]:
        """Per-image arrays the model takes (batch key -> [H, W, C])."""
        v = self.vision
        out = {"pixel_values": (v.image_size, v.image_size, v.num_channels)}
        if self.high_res is not None:
            h = self.high_res
            out["high_res_pixel_values"] = (h.image_size, h.image_size, h.num_channels)
        return out

    @classmethod
    def from_block(cls, model: Any) -> DeepseekVLConfig:
        """From a train config's `model` block: kind (deepseek_vl_hybrid | deepseek_vl),
        decoder (with its kind, default llama), vision (SigLIP fields), high_res_vision (SAM
        fields; the hybrid needs it), image_token_id, optional low_res_resample / dtype /
        param_dtype (the aligner's and downsampler's)."""
        from mathjax_vl.models.build import _plain, decoder_config

        kind = registry.get(model["kind"], "composite").kind
        decoder = _plain(model["decoder"])
        decoder.setdefault("kind", "llama")
        vision = _plain(model["vision"])
        vision.pop("kind", None)
        high = None
        if kind == HYBRID:
            if "high_res_vision" not in model:
                raise ValueError("model.kind deepseek_vl_hybrid needs model.high_res_vision")
            high = _plain(model["high_res_vision"])
            high.pop("kind", None)
            high = registry.config_from_dict("sam_vision", high)
        extra = {k: model[k] for k in ("low_res_resample", "dtype", "param_dtype") if k in model}
        return cls(
            vision=registry.config_from_dict("siglip_vision", vision),
            text=decoder_config(decoder),
            image_token_id=int(model["image_token_id"]),
            high_res=high,
            **extra,
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["text_kind"] = registry.kind_of(self.text)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeepseekVLConfig:
        d = dict(d)
        text = registry.config_from_dict(d.pop("text_kind"), d.pop("text"), role="decoder")
        vision = registry.config_from_dict("siglip_vision", d.pop("vision"))
        high = d.pop("high_res", None)
        high = None if high is None else registry.config_from_dict("sam_vision", high)
        return cls(vision=vision, text=text, high_res=high, **d)


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of torch's bilinear interpolate, align_corners=False, no antialias."""
    scale = n_in / n_out
    src = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0.0)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in), np.float64)
    m[np.arange(n_out), lo] += 1.0 - frac
    m[np.arange(n_out), hi] += frac
    return m.astype(np.float32)


class Downsampler(nn.Module):
    """[B, g, g, C] -> bilinear to [B, 4s, 4s, C] -> conv s2 (2C) -> conv s2 (4C): [B, s, s, 4C]."""

    channels: int
    out_side: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        g = x.shape[1]
        m = jnp.asarray(bilinear_matrix(g, 4 * self.out_side))  # [4s, g]
        x32 = jnp.asarray(x, jnp.float32)
        x = jnp.einsum("yi,xj,bijc->byxc", m, m, x32).astype(self.dtype)
        x = Conv(2 * self.channels, 3, stride=2, padding=1, name="conv1", **kw)(x)
        return Conv(4 * self.channels, 3, stride=2, padding=1, name="conv2", **kw)(x)


class HighResTower(nn.Module):
    """SAM encoder + neck_hd + the shared downsampler + alpha: [N, H, H, 3] -> [N, s*s, 4C]."""

    cfg: SamVisionConfig
    out_side: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, pixels: Array) -> Array:
        cfg = self.cfg
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        first_global = cfg.global_attn_indexes[0] + 1  # HF hidden-state index (0 = embeddings)
        out = registry.build(cfg, name="encoder")(pixels, feature_layers=(first_global,))
        down = Downsampler(cfg.output_channels, self.out_side, name="downsamples", **kw)
        main = down(out.last_hidden_state)
        glob = down(Neck(cfg.output_channels, name="neck_hd", **kw)(out.features[0]))
        alpha = logical_param(self, "alpha", nn.initializers.zeros, (1,), (None,), jnp.float32)
        x = main + glob * jnp.asarray(alpha, self.dtype)
        b, s, _, c = x.shape
        return x.reshape(b, s * s, c)


class DeepseekVL(nn.Module):
    cfg: DeepseekVLConfig

    def setup(self):
        cfg = self.cfg
        kw = dict(dtype=to_dtype(cfg.dtype), param_dtype=to_dtype(cfg.param_dtype))
        self.vision_tower = registry.build(cfg.vision)
        if cfg.high_res is not None:
            self.high_res_vision_tower = HighResTower(cfg.high_res, cfg.grid, **kw)
        t = cfg.text.hidden_size
        dense = lambda n, name: Dense((n,), (ax.EMBED,), (ax.MLP,), True, name=name, **kw)
        if cfg.high_res is None:
            self.aligner_in = dense(t, "aligner_linear1")
        else:
            self.aligner_low = dense(t // 2, "aligner_low")
            self.aligner_high = dense(t // 2, "aligner_high")
        self.aligner_out = Dense((t,), (ax.MLP,), (ax.EMBED,), True, name="aligner_out", **kw)
        self.language_model = registry.build(cfg.text)

    def image_features(self, pixel_values: Array, high_res_pixel_values: Array | None = None):
        """[N, h, h, 3] (+ [N, H, H, 3]) -> projected features [N, image_seq_length, D_text]."""
        cfg = self.cfg
        low = self.vision_tower(pixel_values, use_head=False).last_hidden_state  # post-LN
        low = nn.with_logical_constraint(low, (ax.BATCH, ax.PATCH, ax.EMBED))
        if cfg.high_res is None:
            h = self.aligner_in(low)
        else:
            if high_res_pixel_values is None:
                raise ValueError("the DeepSeek-VL hybrid needs high_res_pixel_values with images")
            if high_res_pixel_values.shape[0] != pixel_values.shape[0]:
                raise ValueError(
                    f"{pixel_values.shape[0]} low-res but {high_res_pixel_values.shape[0]} "
                    "high-res images"
                )
            high = self.high_res_vision_tower(high_res_pixel_values)
            h = jnp.concatenate([self.aligner_high(high), self.aligner_low(low)], axis=-1)
        h = activation(cfg.aligner_act)(h)
        return self.aligner_out(h)

    def embed(
        self,
        input_ids: Array,
        pixel_values: Array | None = None,
        high_res_pixel_values: Array | None = None,
    ) -> Array:
        """Token embeddings with image features scattered in: [B, T, D] (decoder input)."""
        emb = self.language_model.embed(input_ids)
        if pixel_values is None:
            return emb
        if not isinstance(input_ids, jax.core.Tracer):
            check_image_tokens(input_ids, pixel_values.shape[0], self.cfg)
        feats = self.image_features(pixel_values, high_res_pixel_values)
        return scatter_image_features(input_ids, emb, feats, self.cfg.image_token_id)

    def __call__(
        self,
        input_ids: Array,
        pixel_values: Array | None = None,
        attention_mask: Array | None = None,
        positions: Array | None = None,
        segment_ids: Array | None = None,
        *,
        high_res_pixel_values: Array | None = None,
        cache: KVCache | None = None,
        return_logits: bool = True,
    ) -> DecoderOutput:
        if self.is_initializing() and pixel_values is None:
            dummy = {k: jnp.zeros((1, *s), jnp.float32) for k, s in self.cfg.image_inputs.items()}
            self.image_features(**dummy)
        emb = self.embed(input_ids, pixel_values, high_res_pixel_values)
        return self.language_model(
            positions=positions,
            attention_mask=attention_mask,
            segment_ids=segment_ids,
            inputs_embeds=emb,
            cache=cache,
            return_logits=return_logits,
        )


for _kind, _what in (
    (HYBRID, "DeepSeek-VL hybrid: SAM-B high-res + SigLIP low-res towers, split aligner, Llama"),
    (PLAIN, "DeepSeek-VL: SigLIP tower, two-layer aligner, Llama decoder"),
):
    registry.register(
        registry.Architecture(
            kind=_kind,
            role="composite",
            config_cls=DeepseekVLConfig,
            module_cls=DeepseekVL,
            kind_field="kind",
            description=_what,
        )
    )
