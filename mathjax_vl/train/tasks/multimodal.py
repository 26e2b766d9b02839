"""Multimodal next-token SFT of the VLM (Math-PUMA stage 3, LLaVA/MAVIS projector alignment and
instruction tuning). Batch keys: mathjax_vl.data.pipelines `multimodal_sft`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mathjax_vl.train.tasks import common, vlm_common
from mathjax_vl.train.tasks.base import Task


class MultimodalSFT(Task):
    name = "sft"
    accumulation = "sum"

    def __init__(self, config: ml_collections.ConfigDict):
        from mathjax_vl.models import build

        self.cfg = config
        self.vlm_cfg, self.model = build.train_module(config)
        self.seq_len = int(config.data.seq_len)
        self.max_images = int(config.data.get("max_images", 1))
        # layout="packing": several examples per row, segment ids keep attention (and, through
        # the first-label rule of the packer, the loss) inside each example.
        self.packed = config.data.get("layout", "bucketed") == "packing"

    def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
        tok = (batch_size, self.seq_len)
        return {
            "input_ids": jax.ShapeDtypeStruct(tok, jnp.int32),
            "labels": jax.ShapeDtypeStruct(tok, jnp.int32),
            "attention_mask": jax.ShapeDtypeStruct(tok, jnp.int32),
            "positions": jax.ShapeDtypeStruct(tok, jnp.int32),
            **({"segment_ids": jax.ShapeDtypeStruct(tok, jnp.int32)} if self.packed else {}),
            **{
                k: jax.ShapeDtypeStruct((batch_size, self.max_images, *shape), jnp.float32)
                for k, shape in vlm_common.image_inputs(self.vlm_cfg).items()
            },
            "image_mask": jax.ShapeDtypeStruct((batch_size, self.max_images), jnp.int32),
        }

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
