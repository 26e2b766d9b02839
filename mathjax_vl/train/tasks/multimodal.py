"""Objective `multimodal_sft`: next-token SFT of the VLM (Math-PUMA stage 3, LLaVA/MAVIS
projector alignment and instruction tuning). Alias "sft" (with a VLM model).

Records: MultimodalConversation (or TextConversation: a row without images). Rows are
right-padded to a length bucket (layout "bucketed") or hold several whole examples (layout
"packing", with segment_ids; M is then the row's image budget, images in segment order). Keys:
`mathjax_vl.data.pipelines.row_keys`: input_ids / labels / attention_mask / positions [B, L]
int32 (each image is a run of image-token ids, images in order), pixel_values [B, M, H, W, 3]
float32 (zeros for missing images), image_mask [B, M] int32.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from mathjax_vl.data import pipelines as P
from mathjax_vl.data import records as R
from mathjax_vl.data.batch_keys import BatchKey
from mathjax_vl.train.tasks import common, vlm_common
from mathjax_vl.train.tasks.base import Objective, Task


class MultimodalSFTData(P.ObjectiveData):
    name = "multimodal_sft"
    record_types = (R.MultimodalConversation, R.TextConversation)
    layouts = ("bucketed", "packing")

    def process(self, ex, record, index, stream_index):
        return ex.conversation(record.turns, getattr(record, "images", ()), index, stream_index)

    def batch_keys(self, layout):
        return P.row_keys("", layout)

    def collate(self, examples, cfg, pad_token_id):
        return P.collate_rows(examples, "", cfg, pad_token_id)


def image_keys(cfg, prefix: str = "") -> dict[str, BatchKey]:
    """Declarations of the composite's per-image inputs [M, H, W, C] (vlm_common.image_inputs)."""
    return {
        prefix + k: BatchKey(("M", *shape), np.float32, 0.0)
        for k, shape in vlm_common.image_inputs(cfg).items()
    }


class MultimodalSFT(Task):
    data = MultimodalSFTData()
    accumulation = "sum"

    def __init__(self, config: ml_collections.ConfigDict):
        from mathjax_vl.models import build

        self.cfg = config
        self.vlm_cfg, self.model = build.train_module(config)
        self.seq_len = int(config.data.seq_len)
        self.max_images = int(config.data.get("max_images", 1))
        # layout="packing": several examples per row, segment ids keep attention (and, through
        # the first-label rule of the packer, the loss) inside each example.
        self.layout = self.data.resolve_layout(self.requested_layout(config))
        self.packed = self.layout == "packing"

    def dims(self) -> dict[str, int]:
        size = self.vlm_cfg.vision.image_size
        return {"L": self.seq_len, "M": self.max_images, "H": size, "W": size}

    def batch_keys(self) -> dict[str, BatchKey]:
        """The objective's keys, with the model's per-image inputs (DeepSeek-VL adds its
        high-resolution view; synthetic data only, the pipeline adapter refuses it)."""
        return {**self.data.batch_keys(self.layout), **image_keys(self.vlm_cfg)}

    def init(self, rng, batch):
        return self.model.init(
            rng,
            batch["input_ids"],
            **vlm_common.model_images(self.vlm_cfg, batch),
            return_logits=False,
        )["params"]

    def lm_head(self, params):
        from mathjax_vl.models.decoder import lm_head_weight

        return lm_head_weight(params["language_model"], self.vlm_cfg.text)

    def loss_normalizers(self, batch):
        return common.token_normalizers(batch["labels"])

    def loss(self, params, batch, rng, normalizers=None):
        hidden = vlm_common.vlm_hidden(self.model, params, batch)  # [B, T, D]
        targets, mask = common.shifted_targets(batch["labels"])
        return common.token_ce(
            common.flatten_tokens(hidden),
            self.lm_head(params),
            targets.reshape(-1),
            mask.reshape(-1),
            self.cfg.loss,
            normalizers,
        )

    def synthetic_example(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        n_real = int(rng.integers(0, self.max_images + 1))
        row = vlm_common.synthetic_row(
            rng,
            self.seq_len,
            self.vlm_cfg.text.vocab_size,
            self.vlm_cfg.image_token_id,
            self.vlm_cfg.image_seq_length,
            n_real,
        )
        row.update(vlm_common.synthetic_model_images(rng, self.vlm_cfg, self.max_images, n_real))
        if self.packed:  # one example per synthetic row
            row["segment_ids"] = row["attention_mask"].copy()
        return row

    def model_flops_per_example(self) -> float:
        return common.vlm_train_flops(self.vlm_cfg, self.seq_len, self.max_images)


OBJECTIVE = Objective(
    name="multimodal_sft",
    data=MultimodalSFTData(),
    task=MultimodalSFT,
    model_roles=("composite",),
    aliases=("sft",),  # the older task name
)
