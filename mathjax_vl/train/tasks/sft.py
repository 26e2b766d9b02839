"""Objective `text_sft`: next-token SFT of a bare decoder (any registered kind) on packed text
rows (Math-PUMA stage 1). Alias "sft" (with a decoder model; "sft" with the VLM is
`multimodal_sft`).

Records: TextConversation (or an image-free MultimodalConversation). The pipeline always packs
(several conversations per row of L tokens: segment ids keep attention inside each one and
positions restart per conversation); the synthetic source gives one conversation per row
without segment ids unless data.layout = "packing". Keys: see `TextSFTData.batch_keys`.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np

from mathjax_vl.data import packing
from mathjax_vl.data import pipelines as P
from mathjax_vl.data import records as R
from mathjax_vl.data.batch_keys import ARANGE, BatchKey
from mathjax_vl.train.tasks import common
from mathjax_vl.train.tasks.base import Objective, Task


class TextSFTData(P.ObjectiveData):
    name = "text_sft"
    record_types = (R.TextConversation, R.MultimodalConversation)
    layouts = ("bucketed", "packing")

    def resolve_layout(self, requested: str) -> str:
        super().resolve_layout(requested)
        return "packing"  # text rows are always packed by the pipeline

    def process(self, ex, record, index, stream_index):
        if getattr(record, "images", ()):
            raise ex.error(index, "bad_value", "text_sft got a record with images")
        sample = ex.tokenize(record.turns, 0, index)
        return {"input_ids": sample.input_ids, "labels": sample.labels}

    def batch_keys(self, layout: str) -> dict[str, BatchKey]:
        # input_ids [B, L], labels [B, L] (-100: no loss), attention_mask [B, L] (1 = token);
        # packed: segment_ids [B, L] (1, 2, ... per conversation, 0 = padding), positions [B, L]
        # (restart at 0 per segment)
        keys = {
            "input_ids": BatchKey(("L",), np.int32, 0),
            "labels": BatchKey(("L",), np.int32, common.IGNORE),
            "attention_mask": BatchKey(("L",), np.int32, 0),
        }
        if layout == "packing":
            keys["positions"] = BatchKey(("L",), np.int32, ARANGE)
            keys["segment_ids"] = BatchKey(("L",), np.int32, 0)
        return keys

    def collate(self, examples, cfg, pad_token_id):
        raise NotImplementedError("text_sft rows are packed, never collated")

    def batch(self, it, cfg, pad_token_id):
        it = packing.pack_rows(
            it, cfg.tokenization.max_length, pad_token_id, cfg.num_packing_bins, cfg.seed
        )
        return it.batch(cfg.batch_size, drop_remainder=cfg.drop_remainder), None


class TextSFT(Task):
    """Causal-LM SFT of a decoder (any registered kind) on (packed) token rows."""

    data = TextSFTData()
    accumulation = "sum"

    def __init__(self, config: ml_collections.ConfigDict):
        from mathjax_vl.models import build

        self.cfg = config
        self.model_cfg, self.model = build.train_module(config)
        self.seq_len = int(config.data.seq_len)
        # Pipeline rows are packed; synthetic rows too with data.layout = "packing" (or the older
        # data.objective = "text_sft").
        packed = (
            config.data.get("kind", "synthetic") == "pipeline"
            or self.requested_layout(config) == "packing"
            or config.data.get("objective", "") == "text_sft"
        )
        self.layout = "packing" if packed else "bucketed"
        self.packed = packed

    def dims(self) -> dict[str, int]:
        return {"L": self.seq_len}

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


OBJECTIVE = Objective(
    name="text_sft",
    data=TextSFTData(),
    task=TextSFT,
    model_roles=("decoder",),
    # "sft": the older task name; "multimodal_sft": the older data name, which fed text records
    # to a decoder too
    aliases=("sft", "multimodal_sft"),
)
