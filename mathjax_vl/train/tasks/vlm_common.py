"""Building the VLM from config and running it on pipeline batches (shared by the multimodal
objectives). Pipeline images come as [B, M, H, W, C] + image_mask [B, M]; the VLM wants a flat
[N, H, W, C] in placeholder order, so real images are moved (stably) to the front."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mathjax_vl.losses.constants import IGNORE_INDEX


def vlm_config(cfg: ml_collections.ConfigDict):
    """VLMConfig of a `model` block (models.build: any registered tower and decoder)."""
    from mathjax_vl.models.build import vlm_config as build

    return build(cfg)


def flat_images(pixel_values: jax.Array, image_mask: jax.Array) -> jax.Array:
    """[B, M, H, W, C] + [B, M] -> [B*M, H, W, C] with real images first, in row-major order."""
    b, m = image_mask.shape
    flat = pixel_values.reshape(b * m, *pixel_values.shape[2:])
    order = jnp.argsort(1 - image_mask.reshape(-1), stable=True)
    return flat[order]


def image_inputs(cfg: Any) -> dict[str, tuple[int, int, int]]:
    """Per-image arrays the composite takes (batch key -> [H, W, C]): its own `image_inputs`
    (DeepSeek-VL: pixel_values and high_res_pixel_values), else the tower's pixel_values."""
    own = getattr(cfg, "image_inputs", None)
    if own:
        return dict(own)
    v = cfg.vision
    return {"pixel_values": (v.image_size, v.image_size, v.num_channels)}


def model_images(cfg: Any, batch: dict, prefix: str = "") -> dict[str, jax.Array]:
    """The model's flat per-image keyword arguments from a [B, M, ...] batch."""
    mask = batch[prefix + "image_mask"]
    return {k: flat_images(batch[prefix + k], mask) for k in image_inputs(cfg)}


def vlm_hidden(model, params: Any, batch: dict, prefix: str = "") -> jax.Array:
    out = model.apply(
        {"params": params},
        batch[prefix + "input_ids"],
        **model_images(model.cfg, batch, prefix),
        attention_mask=batch[prefix + "attention_mask"],
        positions=batch.get(prefix + "positions"),
        segment_ids=batch.get(prefix + "segment_ids"),
        return_logits=False,
    )
    return out.hidden_states


def synthetic_row(
    rng: np.random.Generator,
    seq_len: int,
    vocab: int,
    image_token_id: int,
    image_tokens: int,
    n_images: int,
    prompt_extra: int = 4,
) -> dict[str, np.ndarray]:
    """A random row: [images' placeholder runs][prompt][response][padding]."""
    t = seq_len
    ids = rng.integers(0, vocab, size=t, dtype=np.int32)
    ids = np.where(ids == image_token_id, (image_token_id + 1) % vocab, ids).astype(np.int32)
    ids[: n_images * image_tokens] = image_token_id
    head = n_images * image_tokens + prompt_extra
    if head + 2 > t:
        raise ValueError(f"seq_len {t} too short for {n_images} images of {image_tokens} tokens")
    length = int(rng.integers(head + 2, t + 1))
    mask = (np.arange(t) < length).astype(np.int32)
    labels = np.where((np.arange(t) >= head) & (mask == 1), ids, IGNORE_INDEX).astype(np.int32)
    ids = np.where(mask == 1, ids, 0).astype(np.int32)
    return {
        "input_ids": ids,
        "labels": labels,
        "attention_mask": mask,
        "positions": np.arange(t, dtype=np.int32),
    }


def synthetic_images(rng: np.random.Generator, m: int, size: int, n_real: int) -> dict:
    pix = rng.standard_normal((m, size, size, 3)).astype(np.float32)
    img_mask = (np.arange(m) < n_real).astype(np.int32)
    pix = (pix * img_mask[:, None, None, None]).astype(np.float32)  # int32 mask would upcast
    return {"pixel_values": pix, "image_mask": img_mask}


def synthetic_model_images(rng: np.random.Generator, cfg: Any, m: int, n_real: int) -> dict:
    """Random images for every per-image input of `cfg` (see image_inputs) + image_mask."""
    img_mask = (np.arange(m) < n_real).astype(np.int32)
    out = {"image_mask": img_mask}
    for key, shape in image_inputs(cfg).items():
        pix = rng.standard_normal((m, *shape)).astype(np.float32)
        out[key] = (pix * img_mask[:, None, None, None]).astype(np.float32)
    return out
