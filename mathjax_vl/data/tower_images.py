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
