"""MathCoder-VL's image-to-code SFT: the VLM reads a figure and is trained on the Python / TikZ
source that draws it (batch keys: mathjax_vl.data.pipelines `image_code`, the same layout as
multimodal SFT). Every row must hold an image; the loss parts separate code tokens."""

from __future__ import annotations

import ml_collections
import numpy as np

from mathjax_vl.train.tasks.base import Task
from mathjax_vl.train.tasks.multimodal import MultimodalSFT


class ImageToCode(MultimodalSFT):
    name = "image_to_code"

    def synthetic_example(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        from mathjax_vl.train.tasks import vlm_common

        cfg = self.vlm_cfg
        row = vlm_common.synthetic_row(
            rng, self.seq_len, cfg.text.vocab_size, cfg.image_token_id, cfg.image_seq_length, 1
        )
        row.update(vlm_common.synthetic_images(rng, self.max_images, cfg.vision.image_size, 1))
        if self.packed:  # one example per synthetic row
            row["segment_ids"] = row["attention_mask"].copy()
        return row

    def loss(self, params, batch, rng, normalizers=None):
        loss, parts = super().loss(params, batch, rng, normalizers)
        images = batch["image_mask"].sum(axis=1)
        parts = dict(parts, rows_without_image=(images == 0).sum().astype("float32"))
        return loss, parts


def make_task(config: ml_collections.ConfigDict) -> Task:
    from mathjax_vl.models import build, registry

    kind = build.model_kind({"kind": "vlm", **config.model})
    if kind == build.DUAL_ENCODER_KIND or registry.get(kind).role != "composite":
        raise ValueError(f"image_to_code needs model.kind = 'vlm', got {kind!r}")
    return ImageToCode(config)
