"""Math-PUMA stage 2: paired KL alignment. Both sides of each pair run through the same model in
one step; the fused objective compares their next-token distributions at aligned response
positions (weak = vision-rich, trained; strong = text-rich target, stop-gradient by default, as
the released code). Batch keys: mathjax_vl.data.pipelines `puma_pair`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mathjax_vl.train.tasks import fused_adapter, vlm_common
from mathjax_vl.train.tasks.base import Task
from mathjax_vl.train.tasks.multimodal import MultimodalSFT

SIDES = ("weak_", "strong_")


class PumaKL(Task):
    name = "puma_kl"
    accumulation = "sum"

    def __init__(self, config: ml_collections.ConfigDict):
        self.cfg = config
        self.base = MultimodalSFT(config)  # same model and per-side batch layout
        self.model = self.base.model
        self.vlm_cfg = self.base.vlm_cfg
        self.seq_len = self.base.seq_len
        self.max_images = self.base.max_images
        self.num_response = int(config.data.get("response_len", self.seq_len // 2))
        self.packed = self.base.packed  # both sides packed in lockstep, R slots per row

    def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
        side = self.base.batch_spec(batch_size)
        side.pop("labels")
        spec = {p + k: v for p in SIDES for k, v in side.items()}
        r = (batch_size, self.num_response)
        for k in ("weak_response_positions", "strong_response_positions", "response_labels"):
            spec[k] = jax.ShapeDtypeStruct(r, jnp.int32)
        spec["response_mask"] = jax.ShapeDtypeStruct(r, jnp.int32)
        return spec

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
            row.pop("labels")
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


def make_task(config: ml_collections.ConfigDict) -> Task:
    return PumaKL(config)
