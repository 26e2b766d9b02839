"""The vision-language model: vision tower -> feature layer -> select -> projector -> decoder.

Any registered tower, projector and decoder (mathjax_vl.models.registry) combine; the VLM is the
registry's "llava" composite (train configs call it model.kind "vlm"), its parts sit under the
scopes their registry entries name (vision_tower, multi_modal_projector, language_model).

Images are a flat batch `pixel_values` [N, H, W, C] (NHWC, normalised), ordered as their
placeholders appear in `input_ids` read row by row: image n fills the n-th run of
`image_token_id` tokens, `image_seq_length` tokens per image. This is HF Llava's
`masked_scatter` semantics, so rows may hold 0, 1 or several images. N is static; extra trailing
images (padding to a fixed N) are computed but never scattered.

Feature selection (HF `vision_feature_layer`, `vision_feature_select_strategy`):
hidden state k of the tower (0 = embeddings, -1 = last layer output, before any post-norm);
several layers are concatenated on the feature axis; "default" drops the first token of each image
(CLIP's class token; for SigLIP, which has none, it drops the first patch, exactly as HF and
Math-PUMA do), "full" keeps all.
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
from mathjax_vl.models.projectors import ProjectorConfig, make_projector

Array = jax.Array

VisionConfig = Any  # any registered tower config (role "tower")
SELECT_STRATEGIES = ("default", "full")
# Train configs' short tower names (model.vision.kind) -> registry kinds.
TOWER_ALIASES = {"siglip": "siglip_vision", "clip": "clip_vision"}
DEFAULT_TEXT_KIND = "qwen2"


def tower_kind(name: str) -> str:
    """A tower kind given as registered ("siglip_vision") or short ("siglip")."""
    return registry.get(TOWER_ALIASES.get(name, name), "tower").kind


def vision_kind(cfg: VisionConfig) -> str:
    """The short tower name stored in checkpoints ("siglip" / "clip" for the built-ins)."""
    kind = registry.spec_of(cfg).kind
    short = {v: k for k, v in TOWER_ALIASES.items()}
    return short.get(kind, kind)


@dataclasses.dataclass(frozen=True)
class VLMConfig:
    vision: VisionConfig
    text: DecoderConfig
    projector: ProjectorConfig
    image_token_id: int
    vision_feature_layer: int | tuple[int, ...] = -2
    vision_feature_select_strategy: str = "default"

    def __post_init__(self):
        registry.get(registry.kind_of(self.vision), "tower")
        registry.get(registry.kind_of(self.text), "decoder")
        if self.vision_feature_select_strategy not in SELECT_STRATEGIES:
            raise ValueError(
                f"vision_feature_select_strategy {self.vision_feature_select_strategy!r} not in "
                f"{SELECT_STRATEGIES}"
            )
        expected_in = self.vision.hidden_size * len(self.feature_layers)
        if self.projector.input_dim != expected_in:
            raise ValueError(
                f"projector input_dim {self.projector.input_dim} != vision hidden "
                f"{self.vision.hidden_size} x {len(self.feature_layers)} feature layer(s)"
            )
        if self.projector.output_dim != self.text.hidden_size:
            raise ValueError(
                f"projector output_dim {self.projector.output_dim} != text hidden "
                f"{self.text.hidden_size}"
            )

    @property
    def feature_layers(self) -> tuple[int, ...]:
        layer = self.vision_feature_layer
        return (layer,) if isinstance(layer, int) else tuple(layer)

    @property
    def image_seq_length(self) -> int:
        """Placeholder tokens per image in input_ids."""
        n = self.vision.num_patches + int(self.vision.has_class_token)
        return n - 1 if self.vision_feature_select_strategy == "default" else n

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["vision_kind"] = vision_kind(self.vision)
        d["text_kind"] = registry.kind_of(self.text)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VLMConfig:
        """Inverse of to_dict; checkpoints written before text_kind existed hold a Qwen2."""
        d = dict(d)
        vision = registry.config_from_dict(tower_kind(d.pop("vision_kind")), d.pop("vision"))
        text_kind = d.pop("text_kind", None) or DEFAULT_TEXT_KIND
        text = registry.config_from_dict(text_kind, d.pop("text"), role="decoder")
        layer = d.pop("vision_feature_layer")
        return cls(
            vision=vision,
            text=text,
            projector=ProjectorConfig(**d.pop("projector")),
            vision_feature_layer=layer if isinstance(layer, int) else tuple(layer),
            **d,
        )


def scatter_image_features(
    input_ids: Array, text_embeds: Array, image_features: Array, image_token_id: int
) -> Array:
    """Places image_features [N, P, D] at the image-token positions of text_embeds [B, T, D].

    The k-th image token of the batch (row-major) receives feature row k of the flattened
    [N * P, D] features; static shapes, so it jits and differentiates w.r.t. both inputs.
    """
    b, t, d = text_embeds.shape
    is_image = (input_ids == image_token_id).reshape(-1)  # [B*T]
    feats = image_features.reshape(-1, d).astype(text_embeds.dtype)  # [N*P, D]
    index = jnp.clip(jnp.cumsum(is_image) - 1, 0, feats.shape[0] - 1)
    out = jnp.where(is_image[:, None], feats[index], text_embeds.reshape(-1, d))
    return out.reshape(b, t, d)


def check_image_tokens(input_ids: Any, num_images: int, cfg: VLMConfig) -> None:
    """Eager check that placeholders and images agree: every row holds whole images
    (a multiple of image_seq_length image tokens) and the batch needs at most num_images."""
    ids = np.asarray(input_ids).reshape(-1, np.shape(input_ids)[-1])
    per = cfg.image_seq_length
    counts = (ids == cfg.image_token_id).sum(axis=-1)
    for row, n in enumerate(counts):
        if n % per:
            raise ValueError(
                f"row {row}: {int(n)} image tokens (id {cfg.image_token_id}) is not a multiple "
                f"of image_seq_length {per}"
            )
    needed = int(counts.sum()) // per
    if needed > num_images:
        raise ValueError(f"input_ids hold {needed} image placeholders but {num_images} images")


class VLM(nn.Module):
    cfg: VLMConfig

    def setup(self):
        cfg = self.cfg
        self.vision_tower = registry.build(cfg.vision)
        self.multi_modal_projector = make_projector(cfg.projector)
        self.language_model = registry.build(cfg.text)

    def image_features(self, pixel_values: Array) -> Array:
        """pixel_values [N, H, W, C] -> projected features [N, image_seq_length, D_text]."""
        cfg = self.cfg
        # use_head=False: a pooling head (SigLIP's MAP) is never needed for features
        out = self.vision_tower(pixel_values, feature_layers=cfg.feature_layers, use_head=False)
        feats = out.features
        if cfg.vision_feature_select_strategy == "default":
            feats = tuple(f[:, 1:] for f in feats)
        x = jnp.concatenate(feats, axis=-1) if len(feats) > 1 else feats[0]
        x = nn.with_logical_constraint(x, (ax.BATCH, ax.PATCH, ax.EMBED))
        return self.multi_modal_projector(x)

    def embed(self, input_ids: Array, pixel_values: Array | None = None) -> Array:
        """Token embeddings with image features scattered in: [B, T, D] (decoder input)."""
        emb = self.language_model.embed(input_ids)
        if pixel_values is None:
            return emb
        if not isinstance(input_ids, jax.core.Tracer):
            check_image_tokens(input_ids, pixel_values.shape[0], self.cfg)
        feats = self.image_features(pixel_values)
        return scatter_image_features(input_ids, emb, feats, self.cfg.image_token_id)

    def __call__(
        self,
        input_ids: Array,
        pixel_values: Array | None = None,
        attention_mask: Array | None = None,
        positions: Array | None = None,
        segment_ids: Array | None = None,
        *,
        cache: KVCache | None = None,
        return_logits: bool = True,
    ) -> DecoderOutput:
        if self.is_initializing() and pixel_values is None:
            v = self.cfg.vision
            dummy = jnp.zeros((1, v.image_size, v.image_size, v.num_channels), jnp.float32)
            self.image_features(dummy)  # create tower (incl. an unused MAP head) + projector
        emb = self.embed(input_ids, pixel_values)
        return self.language_model(
            positions=positions,
            attention_mask=attention_mask,
            segment_ids=segment_ids,
            inputs_embeds=emb,
            cache=cache,
            return_logits=return_logits,
        )


def init_params(cfg: VLMConfig, rng: Array) -> Any:
    """Boxed (logically partitioned) params of a fresh VLM."""
    ids = jnp.zeros((1, 4), jnp.int32)
    return VLM(cfg).init(rng, ids)["params"]


registry.register(
    registry.Architecture(
        kind="llava",
        role="composite",
        config_cls=VLMConfig,
        module_cls=VLM,
        aliases=("vlm",),
        description="LLaVA-style VLM: any tower + projector + any decoder",
    )
)
