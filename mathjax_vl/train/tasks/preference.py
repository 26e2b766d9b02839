"""DPO (Rafailov et al. 2023) on preference pairs, for the VLM and for a bare decoder.

Records: `PreferencePair` (a prompt with its images, a chosen and a rejected response), e.g. from
`mathjax-vl datagen --recipe preference`. Each pair becomes two token rows that share the prompt
and its images: `chosen_*` and `rejected_*` (input_ids, labels, attention_mask, positions
[B, L]; labels -100 on the prompt, image placeholders and padding) and, for the VLM, one
pixel_values [B, M, H, W, 3] / image_mask [B, M] for both.

The loss runs both rows of every pair through the policy in one [2B, L] forward, takes per-
sequence log-probabilities from the fused streaming engine (mathjax_vl.losses.preference: never
[tokens, vocab] logits), does the same with the frozen reference (forward only) and applies the
sigmoid DPO loss (cDPO with `loss.label_smoothing`, IPO with `loss.dpo_loss_type = "ipo"`).

The reference is a second copy of the model in the same parameter tree: params = {"policy": ...,
"reference": ...}. A stage fills both from one checkpoint (init.sources with `into: ["policy",
"reference"]`) and freezes the reference (`optim.frozen = ["^reference/"]`: no gradient, no
optimiser moments, no weight decay); the task refuses a config that would train it.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mathjax_vl.losses.constants import IGNORE_INDEX
from mathjax_vl.train.tasks import common, vlm_common
from mathjax_vl.train.tasks.base import Task

SIDES = ("chosen_", "rejected_")
ROW_KEYS = ("input_ids", "labels", "attention_mask", "positions")
POLICY, REFERENCE = "policy", "reference"


def dpo_config(cfg: ml_collections.ConfigDict):
    """The loss block -> losses.preference.DPOConfig (beta, label_smoothing, dpo_loss_type)."""
    from mathjax_vl.losses.preference import DPOConfig

    return DPOConfig(
        beta=float(cfg.get("beta", 0.1)),
        label_smoothing=float(cfg.get("label_smoothing", 0.0)),
        loss_type=cfg.get("dpo_loss_type", "sigmoid"),
    )


def logprob_config(cfg: ml_collections.ConfigDict):
    from mathjax_vl.losses.preference import LogprobConfig

    return LogprobConfig(
        token_block=int(cfg.get("token_block", 256)),
        vocab_block=cfg.get("vocab_block") or None,
        matmul_dtype=cfg.get("matmul_dtype") or None,
        skip_inactive=bool(cfg.get("skip_inactive", True)),
    )


def naive_sequence_logprobs(hidden, weight, targets, mask, average: bool = False):
    """Full-logits [N, T, V] reference of fused_sequence_logprobs (tests, small vocabularies)."""
    logits = jnp.einsum("btd,vd->btv", hidden, weight, preferred_element_type=jnp.float32)
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    m = mask.astype(jnp.float32)
    seq = jnp.sum(picked * m, axis=-1)
    n = jnp.sum(m, axis=-1)
    return (seq / jnp.maximum(n, 1.0) if average else seq), n


def _check_reference_frozen(config: ml_collections.ConfigDict) -> None:
    frozen = list(config.optim.get("frozen", []))
    if not any(re.search(p, f"{REFERENCE}/x") for p in frozen):
        from mathjax_vl.errors import ConfigError

        raise ConfigError(
            f"task.name='preference' (DPO): optim.frozen = {frozen} does not freeze the reference "
            f"model; add '^{REFERENCE}/' (it must get neither updates nor weight decay)"
        )


class DPO(Task):
    name = "preference"
    accumulation = "sum"

    def __init__(self, config: ml_collections.ConfigDict):
        from mathjax_vl.models import build, registry

        self.cfg = config
        kind = build.model_kind(config.model)
        role = registry.get(kind).role if kind != build.DUAL_ENCODER_KIND else kind
        if role not in ("decoder", "composite"):
            raise ValueError(f"preference (DPO): model.kind {kind!r} is not a decoder or a VLM")
        self.vlm = role == "composite"
        self.model_cfg, self.model = build.train_module(config)
        self.text_cfg = self.model_cfg.text if self.vlm else self.model_cfg
        if self.vlm:
            self.vlm_cfg = self.model_cfg  # the pipeline adapter reads image sizes from it
        self.seq_len = int(config.data.seq_len)
        self.max_images = int(config.data.get("max_images", 1))
        self.dpo = dpo_config(config.loss)
        self.average = self.dpo.loss_type == "ipo"  # IPO compares length-normalised log-probs
        _check_reference_frozen(config)

    # ------------------------------------------------------------------ shapes
    def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
        tok = jax.ShapeDtypeStruct((batch_size, self.seq_len), jnp.int32)
        spec = {p + k: tok for p in SIDES for k in ROW_KEYS}
        if self.vlm:
            v = self.vlm_cfg.vision
            spec["pixel_values"] = jax.ShapeDtypeStruct(
                (batch_size, self.max_images, v.image_size, v.image_size, v.num_channels),
                jnp.float32,
            )
            spec["image_mask"] = jax.ShapeDtypeStruct((batch_size, self.max_images), jnp.int32)
        return spec

    def count_tokens(self, batch) -> int:
        return sum(int(np.asarray(batch[p + "attention_mask"]).sum()) for p in SIDES)

    def computed_tokens(self, batch) -> int:
        return sum(int(np.asarray(batch[p + "input_ids"]).size) for p in SIDES)

    # ------------------------------------------------------------------ model
    def _rows(self, batch: dict) -> dict:
        """Both sides stacked: chosen rows then rejected rows, [2B, ...]; images repeated."""
        rows = {k: jnp.concatenate([batch[p + k] for p in SIDES], axis=0) for k in ROW_KEYS}
        if self.vlm:
            for k in ("pixel_values", "image_mask"):
                rows[k] = jnp.concatenate([batch[k], batch[k]], axis=0)
        return rows

    def _hidden(self, params: Any, rows: dict) -> jax.Array:
        if self.vlm:
            return vlm_common.vlm_hidden(self.model, params, rows)
        out = self.model.apply(
            {"params": params},
            rows["input_ids"],
            positions=rows["positions"],
            attention_mask=rows["attention_mask"],
            return_logits=False,
        )
        return out.hidden_states

    def lm_head(self, params: Any) -> jax.Array:
        from mathjax_vl.models.decoder import lm_head_weight

        return lm_head_weight(params["language_model"] if self.vlm else params, self.text_cfg)

    def init(self, rng, batch):
        rows = {k: batch["chosen_" + k] for k in ROW_KEYS}
        if self.vlm:
            images = vlm_common.flat_images(batch["pixel_values"], batch["image_mask"])
            params = self.model.init(
                rng, rows["input_ids"], pixel_values=images, return_logits=False
            )["params"]
        else:
            params = self.model.init(rng, rows["input_ids"], return_logits=False)["params"]
        return {POLICY: params, REFERENCE: params}

    def sequence_logprobs(self, params: Any, rows: dict) -> tuple[jax.Array, jax.Array]:
        """(log pi(response | prompt) [2B], response tokens [2B]) of the stacked rows."""
        from mathjax_vl.losses.preference import fused_sequence_logprobs

        hidden = self._hidden(params, rows)  # [2B, L, D]
        targets, mask = common.shifted_targets(rows["labels"])
        if self.cfg.loss.get("impl", "fused") == "naive":
            return naive_sequence_logprobs(
                hidden, self.lm_head(params), targets, mask, self.average
            )
        return fused_sequence_logprobs(
            hidden,
            self.lm_head(params),
            targets,
            mask.astype(bool),
            logprob_config(self.cfg.loss),
            average=self.average,
        )

    # ------------------------------------------------------------------ loss
    def loss_normalizers(self, batch):
        return {"pairs": jnp.asarray(batch["chosen_input_ids"].shape[0], jnp.float32)}

    def loss(self, params, batch, rng, normalizers=None):
        from mathjax_vl.losses.preference import dpo_loss

        rows = self._rows(batch)
        b = batch["chosen_input_ids"].shape[0]
        policy, n_tokens = self.sequence_logprobs(params[POLICY], rows)
        reference, _ = self.sequence_logprobs(jax.lax.stop_gradient(params[REFERENCE]), rows)
        num_pairs = None if normalizers is None else normalizers["pairs"]
        loss, parts = dpo_loss(
            policy[:b], policy[b:], reference[:b], reference[b:], self.dpo, num_pairs=num_pairs
        )
        denom = jnp.float32(b) if num_pairs is None else num_pairs
        parts["policy_chosen_logp"] = jax.lax.stop_gradient(jnp.sum(policy[:b]) / denom)
        parts["policy_rejected_logp"] = jax.lax.stop_gradient(jnp.sum(policy[b:]) / denom)
        parts["tokens"] = jnp.sum(n_tokens)
        return loss, parts

    # ------------------------------------------------------------------ synthetic
    def synthetic_example(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One prompt (with 0..M images for the VLM) and two different random responses."""
        t, vocab = self.seq_len, self.text_cfg.vocab_size
        n_img = int(rng.integers(0, self.max_images + 1)) if self.vlm else 0
        image_id = self.vlm_cfg.image_token_id if self.vlm else -1
        image_tokens = self.vlm_cfg.image_seq_length if self.vlm else 0
        head = n_img * image_tokens + int(rng.integers(2, 6))
        if head + 4 > t:
            raise ValueError(f"seq_len {t} too short for {n_img} images and two responses")
        prompt = rng.integers(0, vocab, size=head, dtype=np.int32)
        prompt[: n_img * image_tokens] = image_id
        out: dict[str, np.ndarray] = {}
        for side in SIDES:
            length = int(rng.integers(head + 2, t + 1))
            ids = rng.integers(0, vocab, size=t, dtype=np.int32)
            ids = np.where(ids == image_id, (image_id + 1) % vocab, ids).astype(np.int32)
            ids[:head] = prompt
            mask = (np.arange(t) < length).astype(np.int32)
            labels = np.where((np.arange(t) >= head) & (mask == 1), ids, IGNORE_INDEX)
            out[side + "input_ids"] = np.where(mask == 1, ids, 0).astype(np.int32)
            out[side + "labels"] = labels.astype(np.int32)
            out[side + "attention_mask"] = mask
            out[side + "positions"] = np.arange(t, dtype=np.int32)
        if self.vlm:
            out.update(
                vlm_common.synthetic_images(
                    rng, self.max_images, self.vlm_cfg.vision.image_size, n_img
                )
            )
        return out

    def model_flops_per_example(self) -> float:
        """Policy forward + backward on both rows, reference forward on both (1/3 of it)."""
        if self.vlm:
            one = common.vlm_train_flops(self.vlm_cfg, self.seq_len, self.max_images)
        else:
            one = common.decoder_train_flops(self.model_cfg, self.seq_len)
        return 2 * one * (1 + 1 / 3)


def make_task(config: ml_collections.ConfigDict) -> Task:
    return DPO(config)
