"""Objective `image_to_code`: MathCoder-VL's image-to-code SFT. The VLM reads a figure and is
trained on the Python / TikZ source that draws it. Alias "image_code" (the older data and
datagen name).

Records: ImageCode, turned into a user turn (the image + MathCoder-VL's prompt for the language)
and an assistant turn (the code). Batch keys and layouts: those of `multimodal_sft`. Every row
must hold an image; the loss parts count rows without one.
"""

from __future__ import annotations

import numpy as np

from mathjax_vl.data import records as R
from mathjax_vl.train.tasks.base import Objective
from mathjax_vl.train.tasks.multimodal import MultimodalSFT, MultimodalSFTData

# MathCoder-VL's image-to-code prompts (REFERENCE.md section 3).
CODE_PROMPTS = {
    "python": "Please provide the Python code needed to reproduce this image.",
    "tikz": "Please generate the corresponding TikZ code that accurately represents the visual "
    "elements in the image.",
}


class ImageToCodeData(MultimodalSFTData):
    name = "image_to_code"
    record_types = (R.ImageCode,)

    def process(self, ex, record, index, stream_index):
        prompt = f"{R.IMAGE_PLACEHOLDER}\n{CODE_PROMPTS[record.language]}"
        turns = (R.Turn("user", prompt), R.Turn("assistant", record.code))
        return ex.conversation(turns, (record.image,), index, stream_index)


class ImageToCode(MultimodalSFT):
    data = ImageToCodeData()

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


OBJECTIVE = Objective(
    name="image_to_code",
    data=ImageToCodeData(),
    task=ImageToCode,
    model_roles=("composite",),
    aliases=("image_code",),
)
