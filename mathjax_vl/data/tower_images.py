"""Tower-side entry to image preprocessing: paths, PIL images or arrays -> the tower's pixels.

One implementation serves training, evaluation and the `generate` CLI:
mathjax_vl.data.image_processing (SigLIP: squash-resize; CLIP: shortest-edge resize + centre crop;
bicubic, rescale, normalise; tested against HF's processors). This module only adapts inputs.
Output is NHWC float32, what the towers take.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np


def preprocess_image(image: Any, vision_cfg: Any) -> np.ndarray:
    """One image (path, PIL image or uint8 HWC array) -> [H, W, 3] float32 for the tower."""
    from mathjax_vl.data.image_processing import ImageProcessingConfig, process_image

    source = "<memory>"
    if isinstance(image, (str, os.PathLike)):
        source = os.fspath(image)
        try:
            with open(source, "rb") as f:
                image = f.read()
        except OSError as e:
            raise ValueError(f"cannot read image {source!r}: {e}") from e
    return process_image(image, ImageProcessingConfig.for_tower(vision_cfg), source=source, index=0)


def preprocess_images(images: Sequence[Any], vision_cfg: Any) -> np.ndarray:
    """Images -> [N, H, W, 3] float32."""
    if not images:
        size = vision_cfg.image_size
        return np.zeros((0, size, size, 3), np.float32)
    return np.stack([preprocess_image(im, vision_cfg) for im in images])


def preprocess_deepseek(images: Sequence[Any], cfg: Any) -> dict[str, np.ndarray]:
    """Images -> the DeepSeek-VL model's per-image inputs (models.deepseek_vl), as its HF image
    processors make them: the high-res view is the image with its longest edge resized to the
    SAM size and padded to a square (colour int(255 * mean)); the low-res view is that padded
    uint8 square resized to the SigLIP size. Without a high-res tower (DeepSeek-VL alone) the
    low-res view is made from the image directly.

    Returns {"pixel_values": [N, h, h, 3]} (+ "high_res_pixel_values": [N, H, H, 3]), float32.
    """
    from mathjax_vl.data.image_processing import (
        ImageProcessingConfig,
        decode_image,
        normalize,
        resize_image,
    )

    v = cfg.vision
    low = ImageProcessingConfig(
        v.image_size, v.image_size, "pad_square", tuple(v.image_mean), tuple(v.image_std),
        resample=cfg.low_res_resample,
    )  # fmt: skip
    high = None
    if cfg.high_res is not None:
        h = cfg.high_res
        high = ImageProcessingConfig(
            h.image_size, h.image_size, "pad_square", tuple(h.image_mean), tuple(h.image_std)
        )
    out: dict[str, list[np.ndarray]] = {k: [] for k in cfg.image_inputs}
    for index, image in enumerate(images):
        source = os.fspath(image) if isinstance(image, (str, os.PathLike)) else "<memory>"
        if source != "<memory>":
            try:
                with open(source, "rb") as f:
                    image = f.read()
            except OSError as e:
                raise ValueError(f"cannot read image {source!r}: {e}") from e
        pil = decode_image(image, source, index)
        if high is not None:
            pil = resize_image(pil, high)  # the padded high-res square, uint8
            out["high_res_pixel_values"].append(normalize(np.asarray(pil, np.uint8), high))
        small = resize_image(pil, low)
        out["pixel_values"].append(normalize(np.asarray(small, np.uint8), low))
    return {
        k: np.stack(v) if v else np.zeros((0, *cfg.image_inputs[k]), np.float32)
        for k, v in out.items()
    }
