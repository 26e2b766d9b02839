"""Objective `puma_kl`: Math-PUMA stage 2, paired KL alignment. Both sides of each pair run
through the same model in one step; the fused objective compares their next-token distributions
at aligned response positions (weak = vision-rich, trained; strong = text-rich target,
stop-gradient by default, as the released code). Alias "puma_pair" (the older data name).

Records: PumaPair. Keys (`PumaPairData.batch_keys`): `multimodal_sft`'s row keys per side with
prefixes ``weak_`` and ``strong_`` (each side padded to its own length bucket; the side labels
are carried for inspection, the loss reads the aligned arrays), plus
weak_response_positions / strong_response_positions [B, R] int32: logit positions whose next
token is the r-th response token, so ``hidden_weak[b, weak_response_positions[b, r]]`` and
``hidden_strong[b, strong_response_positions[b, r]]`` predict the same ``response_labels[b, r]``
[B, R] int32 (-100 padding); response_mask [B, R] int32 (padding slots point at 0). With layout
"packing" both sides are packed in lockstep and the response arrays hold every pair of the row.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mathjax_vl.data import packing
from mathjax_vl.data import pipelines as P
from mathjax_vl.data import records as R
from mathjax_vl.data.batch_keys import BatchKey
from mathjax_vl.losses.constants import IGNORE_INDEX
from mathjax_vl.train.tasks import fused_adapter, vlm_common
from mathjax_vl.train.tasks.base import Objective, Task
from mathjax_vl.train.tasks.multimodal import MultimodalSFT, image_keys

SIDES = ("weak_", "strong_")


class PumaPairData(P.ObjectiveData):
    name = "puma_kl"
    record_types = (R.PumaPair,)
    layouts = ("bucketed", "packing")
    pack_sides = SIDES
    pack_response = True

    def process(self, ex, record, index, stream_index):
        out = {}
        for side_id, (prefix, side) in enumerate(zip(SIDES, ("vision_rich", "text_rich"))):
            conv = record.side_conversation(side)
            out.update(
                ex.conversation(conv.turns, conv.images, index, stream_index, prefix, side_id)
            )
        weak_labels, strong_labels = out["weak_labels"], out["strong_labels"]
        weak_pos = np.flatnonzero(weak_labels[1:] != IGNORE_INDEX).astype(np.int32)
        strong_pos = np.flatnonzero(strong_labels[1:] != IGNORE_INDEX).astype(np.int32)
        weak_tokens = weak_labels[weak_pos + 1]
        strong_tokens = strong_labels[strong_pos + 1]
        n = min(len(weak_pos), len(strong_pos))  # truncation may shorten one side's response
        if not np.array_equal(weak_tokens[:n], strong_tokens[:n]) or (
            len(weak_pos) != len(strong_pos) and ex.cfg.tokenization.too_long != "truncate"
        ):
            raise ex.error(
                index,
                "pair_mismatch",
                f"the two sides' response tokens differ ({len(weak_pos)} vs {len(strong_pos)} "
                "tokens): positions cannot be aligned",
            )
        if n == 0:
            raise ex.error(index, "too_long", "no aligned response left")
        if n > ex.cfg.r_buckets[-1]:
            raise ex.error(
                index,
                "too_long",
                f"response of {n} tokens > largest response bucket {ex.cfg.r_buckets[-1]}",
            )
        out["weak_response_positions"] = weak_pos[:n]
        out["strong_response_positions"] = strong_pos[:n]
        out["response_labels"] = weak_tokens[:n].astype(np.int32)
        return out

    def batch_keys(self, layout):
        keys = {**P.row_keys("weak_", layout), **P.row_keys("strong_", layout)}
        keys.update(
            {
                "weak_response_positions": BatchKey(("R",), np.int32, 0),
                "strong_response_positions": BatchKey(("R",), np.int32, 0),
                "response_labels": BatchKey(("R",), np.int32, IGNORE_INDEX),
                "response_mask": BatchKey(("R",), np.int32, 0),
            }
        )
        return keys

    def collate(self, examples, cfg, pad_token_id):
        out = {}
        for prefix in SIDES:
            out.update(P.collate_rows(examples, prefix, cfg, pad_token_id))
        r = packing.bucket_length(
            max(len(e["weak_response_positions"]) for e in examples), cfg.r_buckets
        )
        for key in ("weak_response_positions", "strong_response_positions"):
            out[key] = packing.pad_1d([e[key] for e in examples], r, 0)
        out["response_labels"] = packing.pad_1d(
            [e["response_labels"] for e in examples], r, IGNORE_INDEX
        )
        out["response_mask"] = packing.pad_1d(
            [np.ones(len(e["response_labels"]), np.int32) for e in examples], r, 0
        )
        return out


class PumaKL(Task):
    data = PumaPairData()
    accumulation = "sum"

    def __init__(self, config: ml_collections.ConfigDict):
        self.cfg = config
        self.base = MultimodalSFT(config)  # same model and per-side batch layout
        self.model = self.base.model
        self.vlm_cfg = self.base.vlm_cfg
        self.seq_len = self.base.seq_len
        self.max_images = self.base.max_images
        self.num_response = int(config.data.get("response_len", self.seq_len // 2))
        self.layout = self.data.resolve_layout(self.requested_layout(config))
        self.packed = self.layout == "packing"  # both sides packed in lockstep, R slots per row

    def dims(self) -> dict[str, int]:
        return {**self.base.dims(), "R": self.num_response}

    def batch_keys(self) -> dict[str, BatchKey]:
        keys = self.data.batch_keys(self.layout)
        for side in SIDES:  # the model's per-image inputs on each side (see MultimodalSFT)
            keys.update(image_keys(self.vlm_cfg, side))
        return keys

    def init(self, rng, batch):
        side = {k[len("weak_") :]: v for k, v in batch.items() if k.startswith("weak_")}
        return self.base.init(rng, side)

    def count_tokens(self, batch) -> int:
        return int(np.asarray(batch["weak_attention_mask"]).sum()) + int(
            np.asarray(batch["strong_attention_mask"]).sum()
        )

    def computed_tokens(self, batch) -> int:
        return int(np.asarray(batch["weak_input_ids"]).size) + int(
            np.asarray(batch["strong_input_ids"]).size
        )

    def num_pairs(self, batch) -> jax.Array:
        """Pairs in the batch (the released normalisation divides by it): rows, or segments."""
        if self.packed:
            return jnp.max(batch["weak_segment_ids"], axis=1).sum()
        return jnp.asarray(batch["response_labels"].shape[0])

    def loss_normalizers(self, batch):
        """The whole batch's aligned response tokens and pairs ("released" divides the KL by
        the latter), for exact gradient accumulation."""
        return {
            "tokens": jnp.sum(batch["response_mask"], dtype=jnp.float32),
            "sequences": self.num_pairs(batch).astype(jnp.float32),
        }

    def loss(self, params, batch, rng, normalizers=None):
        from mathjax_vl.losses.positions import gather_aligned

        weak = vlm_common.vlm_hidden(self.model, params, batch, "weak_")
        strong_grad = bool(self.cfg.loss.get("strong_grad", False))
        strong_params = params if strong_grad else jax.lax.stop_gradient(params)
        strong = vlm_common.vlm_hidden(self.model, strong_params, batch, "strong_")
        hw, hs = gather_aligned(
            weak, strong, batch["weak_response_positions"], batch["strong_response_positions"]
        )  # [B*R, D] each
        return fused_adapter.fused_kl(
            hw,
            hs,
            self.base.lm_head(params),
            batch["response_labels"].reshape(-1),
            batch["response_mask"].reshape(-1),
            self.cfg.loss,
            num_sequences=self.num_pairs(batch)
            if normalizers is None
            else normalizers["sequences"],
            num_tokens=None if normalizers is None else normalizers["tokens"],
        )

    def synthetic_example(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Same random response on both sides after different prompts (weak side has the image)."""
        cfg = self.vlm_cfg
        t, r = self.seq_len, self.num_response
        response = rng.integers(0, cfg.text.vocab_size, size=r, dtype=np.int32)
        response = np.where(response == cfg.image_token_id, 0, response).astype(np.int32)
        out: dict[str, np.ndarray] = {}
        starts = {}
        for prefix, n_img in (("weak_", self.max_images), ("strong_", 0)):
            row = vlm_common.synthetic_row(
                rng, t, cfg.text.vocab_size, cfg.image_token_id, cfg.image_seq_length, n_img
            )
            head = n_img * cfg.image_seq_length + int(rng.integers(2, 6))
            if head + r > t:
                raise ValueError(f"seq_len {t} too short for a {r}-token response")
            row["input_ids"][head : head + r] = response
            row["attention_mask"] = (np.arange(t) < head + r).astype(np.int32)
            row["input_ids"] = np.where(row["attention_mask"] == 1, row["input_ids"], 0)
            response_slots = (np.arange(t) >= head) & (np.arange(t) < head + r)
            row["labels"] = np.where(response_slots, row["input_ids"], IGNORE_INDEX)
            row["labels"] = row["labels"].astype(np.int32)
            if self.packed:  # one pair per synthetic row
                row["segment_ids"] = row["attention_mask"].copy()
            row.update(vlm_common.synthetic_model_images(rng, cfg, self.max_images, n_img))
            out.update({prefix + k: v for k, v in row.items()})
            starts[prefix] = head
        # position p predicts token p + 1: the r-th response token is predicted at head + r - 1
        out["weak_response_positions"] = (starts["weak_"] - 1 + np.arange(r)).astype(np.int32)
        out["strong_response_positions"] = (starts["strong_"] - 1 + np.arange(r)).astype(np.int32)
        out["response_labels"] = response
        out["response_mask"] = np.ones(r, np.int32)
        return out

    def model_flops_per_example(self) -> float:
        return 2 * self.base.model_flops_per_example()


OBJECTIVE = Objective(
    name="puma_kl",
    data=PumaPairData(),
    task=PumaKL,
    model_roles=("composite",),
    aliases=("puma_pair",),
)
