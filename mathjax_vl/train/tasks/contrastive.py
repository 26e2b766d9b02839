"""MAVIS CLIP-Math: contrastive training of a dual encoder (CLIP vision + text towers) with CLIP's
softmax InfoNCE or SigLIP's sigmoid loss (learned bias added here). Batch keys:
mathjax_vl.data.pipelines `image_caption`. The loss runs on the global (batch-sharded) arrays, so
negatives come from the whole global batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mathjax_vl.train.tasks.base import Task


class Contrastive(Task):
    name = "contrastive"

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

    def loss(self, params, batch, rng):
        from mathjax_vl.losses.contrastive import clip_loss, siglip_loss

        objectives = {
            "clip": lambda o: clip_loss(img, txt, scale),
            "siglip": lambda o: siglip_loss(img, txt, scale, o["logit_bias"]),
        }
        out = self.model.apply(
            {"params": params}, batch["pixel_values"], batch["caption_ids"], batch["caption_mask"]
        )
        img, txt, scale = out["image_embeds"], out["text_embeds"], out["logit_scale"]
        loss = objectives[self.kind](out)
        sims = img @ txt.T
        acc = jnp.mean(jnp.argmax(sims, axis=1) == jnp.arange(sims.shape[0]))
        return loss, {self.kind: loss, "logit_scale": scale, "i2t_accuracy": acc}

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
