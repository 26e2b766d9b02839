"""MAVIS CLIP-Math: contrastive training of a dual encoder (CLIP vision + text towers) with CLIP's
softmax InfoNCE or SigLIP's sigmoid loss (learned bias added here). Batch keys:
mathjax_vl.data.pipelines `image_caption`. The loss runs on the global (batch-sharded) arrays, so
negatives come from the whole global batch, also under gradient accumulation (GradCache)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mathjax_vl.train.tasks.base import Task


class Contrastive(Task):
    name = "contrastive"
    # Negatives come from the whole batch, so per-microbatch losses would be another objective:
    # accumulation caches the batch's embeddings instead (see mathjax_vl.train.step).
    accumulation = "embeddings"

    def __init__(self, config: ml_collections.ConfigDict):
        from mathjax_vl.models import build

        self.cfg = config
        self.kind = build.contrastive_loss(config)
        self.clip_cfg, self.model = build.train_module(config)
        self.caption_len = int(config.data.get("caption_len", 32))

    def batch_spec(self, batch_size):
        v = self.clip_cfg.vision
        return {
            "pixel_values": jax.ShapeDtypeStruct(
                (batch_size, v.image_size, v.image_size, v.num_channels), jnp.float32
            ),
            "caption_ids": jax.ShapeDtypeStruct((batch_size, self.caption_len), jnp.int32),
            "caption_mask": jax.ShapeDtypeStruct((batch_size, self.caption_len), jnp.int32),
        }

    def init(self, rng, batch):
        return self.model.init(
            rng, batch["pixel_values"], batch["caption_ids"], batch["caption_mask"]
        )["params"]

    def count_tokens(self, batch) -> int:
        return int(np.asarray(batch["caption_mask"]).sum())

    def embeddings(self, params, batch, rng):
        """L2-normalised image and text embeddings [B, P] each."""
        out = self.model.apply(
            {"params": params}, batch["pixel_values"], batch["caption_ids"], batch["caption_mask"]
        )
        return {"image": out["image_embeds"], "text": out["text_embeds"]}

    def loss_from_embeddings(self, params, embeddings):
        from mathjax_vl.losses.contrastive import clip_loss, siglip_loss

        img, txt = embeddings["image"], embeddings["text"]
        from mathjax_vl.models.build import DUAL_ENCODER_SCOPE

        scale = jnp.asarray(params[DUAL_ENCODER_SCOPE]["logit_scale"], jnp.float32)
        objectives = {
            "clip": lambda: clip_loss(img, txt, scale),
            "siglip": lambda: siglip_loss(img, txt, scale, params["logit_bias"]),
        }
        loss = objectives[self.kind]()
        sims = img @ txt.T
        acc = jnp.mean(jnp.argmax(sims, axis=1) == jnp.arange(sims.shape[0]))
        return loss, {self.kind: loss, "logit_scale": scale, "i2t_accuracy": acc}

    def loss(self, params, batch, rng):
        return self.loss_from_embeddings(params, self.embeddings(params, batch, rng))

    def synthetic_example(self, rng):
        v, t = self.clip_cfg.vision, self.clip_cfg.text
        c = self.caption_len
        length = int(rng.integers(3, c + 1))
        ids = rng.integers(1, t.vocab_size, size=c, dtype=np.int32)
        ids = np.where(ids == t.eos_token_id, 1, ids)
        ids[length - 1] = t.eos_token_id
        mask = (np.arange(c) < length).astype(np.int32)
        return {
            "pixel_values": rng.standard_normal((v.image_size, v.image_size, 3)).astype(np.float32),
            "caption_ids": np.where(mask == 1, ids, 0).astype(np.int32),
            "caption_mask": mask,
        }


def make_task(config: ml_collections.ConfigDict) -> Task:
    return Contrastive(config)
