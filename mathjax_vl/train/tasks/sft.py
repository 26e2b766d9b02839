"""Next-token SFT: text-only (any registered decoder) or multimodal (the VLM), Math-PUMA stages
1 and 3, LLaVA/MAVIS projector alignment and instruction tuning.

Batch keys: see tasks/common.py; multimodal adds pixel_values [B, N_img, H, W, C] float32 and
image_mask [B, N_img] (1 = real image) as documented by mathjax_vl.data.pipelines.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mathjax_vl.train.tasks import common
from mathjax_vl.train.tasks.base import Task


class TextSFT(Task):
    """Causal-LM SFT of a decoder (any registered kind) on (packed) token rows."""

    name = "sft"
    accumulation = "sum"

    def __init__(self, config: ml_collections.ConfigDict):
        from mathjax_vl.models import build

        self.cfg = config
        self.model_cfg, self.model = build.train_module(config)
        self.seq_len = int(config.data.seq_len)
        # Packed rows (the text_sft pipeline) hold several conversations: attention must stay
        # within each one (segment ids) and positions restart per conversation.
        self.packed = config.data.get("objective", "") == "text_sft"

    def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
        shape = (batch_size, self.seq_len)
        keys = ["input_ids", "labels", "attention_mask"]
        if self.packed:
            keys += ["positions", "segment_ids"]
        return {k: jax.ShapeDtypeStruct(shape, jnp.int32) for k in keys}

    def init(self, rng, batch):
        return self.model.init(rng, batch["input_ids"], return_logits=False)["params"]

    def hidden_states(self, params: Any, batch: dict) -> jax.Array:
        out = self.model.apply(
            {"params": params},
            batch["input_ids"],
            positions=batch.get("positions"),
            attention_mask=batch["attention_mask"],
            segment_ids=batch.get("segment_ids"),
            return_logits=False,
        )
        return out.hidden_states

    def loss_normalizers(self, batch):
        return common.token_normalizers(batch["labels"])

    def loss(self, params, batch, rng, normalizers=None):
        from mathjax_vl.models.decoder import lm_head_weight

        hidden = self.hidden_states(params, batch)  # [B, T, D]
        targets, mask = common.shifted_targets(batch["labels"])
        return common.token_ce(
            common.flatten_tokens(hidden),
            lm_head_weight(params, self.model_cfg),
            targets.reshape(-1),
            mask.reshape(-1),
            self.cfg.loss,
            normalizers,
        )

    def synthetic_example(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A random row: a prompt (no loss) then a response, right-padded."""
        t = self.seq_len
        ids = rng.integers(0, self.model_cfg.vocab_size, size=t, dtype=np.int32)
        length = int(rng.integers(t // 2, t + 1))
        prompt = int(rng.integers(1, max(2, length // 2)))
        mask = (np.arange(t) < length).astype(np.int32)
        labels = np.where((np.arange(t) >= prompt) & (mask == 1), ids, common.IGNORE)
        ids = np.where(mask == 1, ids, 0).astype(np.int32)
        row = {"input_ids": ids, "labels": labels.astype(np.int32), "attention_mask": mask}
        if self.packed:  # one conversation per synthetic row
            row["positions"] = np.arange(t, dtype=np.int32)
            row["segment_ids"] = mask.copy()
        return row

    def model_flops_per_example(self) -> float:
        return common.decoder_train_flops(self.model_cfg, self.seq_len)


def make_task(config: ml_collections.ConfigDict) -> Task:
    """Text SFT when the model is a bare decoder, multimodal SFT when it is the VLM (the
    registry's role of model.kind decides; unknown kinds list the registered ones)."""
    from mathjax_vl.models import build, registry

    kind = build.model_kind(config.model)
    role = registry.get(kind).role if kind != build.DUAL_ENCODER_KIND else kind
    if role == "decoder":
        return TextSFT(config)
    if role == "composite":
        from mathjax_vl.train.tasks.multimodal import MultimodalSFT

        return MultimodalSFT(config)
    raise ValueError(f"sft: model.kind {kind!r} is not a decoder or a VLM")
