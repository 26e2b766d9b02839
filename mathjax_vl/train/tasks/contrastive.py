"""Objective `contrastive`: MAVIS CLIP-Math, contrastive training of a dual encoder (CLIP vision
+ text towers) with CLIP's softmax InfoNCE or SigLIP's sigmoid loss (learned bias added here).
Alias "image_caption" (the older data name), datagen recipe `contrastive` (was "captions").

Records: ImageCaption. Keys: pixel_values [B, H, W, 3] float32, caption_ids [B, C] int32 (the
tokenizer's own special tokens, truncated to C = caption_len), caption_mask [B, C] int32. The
loss runs on the global (batch-sharded) arrays, so negatives come from the whole global batch,
also under gradient accumulation (GradCache: the step caches the batch's embeddings and
back-propagates per microbatch).
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np

from mathjax_vl.data import packing
from mathjax_vl.data import pipelines as P
from mathjax_vl.data import records as R
from mathjax_vl.data.batch_keys import BatchKey
from mathjax_vl.data.tokenization import load_tokenizer
from mathjax_vl.train.tasks.base import Objective, Task


class CaptionData(P.ObjectiveData):
    name = "contrastive"
    record_types = (R.ImageCaption,)
    layouts = ("bucketed",)  # no token rows to pack

    def pad_token_id(self, ex):
        # a CLIP text tokenizer has no chat/image tokens: not the conversation tokenizer
        return load_tokenizer(ex.tokenizer_dir).pad_token_id or 0

    def process(self, ex, record, index, stream_index):
        tok = load_tokenizer(ex.tokenizer_dir)
        ids = tok(
            record.caption,
            add_special_tokens=True,
            truncation=True,
            max_length=ex.cfg.caption_max_length,
        )["input_ids"]
        pixels = ex.images((record.image,), index, stream_index, 0)[0][0]
        return {"pixel_values": pixels, "caption_ids": np.asarray(ids, np.int32)}

    def batch_keys(self, layout):
        return {
            "pixel_values": BatchKey(("H", "W", 3), np.float32, 0.0),
            "caption_ids": BatchKey(("C",), np.int32, 0),
            "caption_mask": BatchKey(("C",), np.int32, 0),
        }

    def collate(self, examples, cfg, pad_token_id):
        c = cfg.caption_max_length
        ids = [e["caption_ids"] for e in examples]
        return {
            "pixel_values": np.stack([e["pixel_values"] for e in examples]).astype(np.float32),
            "caption_ids": packing.pad_1d(ids, c, pad_token_id),
            "caption_mask": packing.pad_1d([np.ones(len(x), np.int32) for x in ids], c, 0),
        }


class Contrastive(Task):
    data = CaptionData()
    # Negatives come from the whole batch, so per-microbatch losses would be another objective:
    # accumulation caches the batch's embeddings instead (see mathjax_vl.train.step).
    accumulation = "embeddings"

    def __init__(self, config: ml_collections.ConfigDict):
        from mathjax_vl.models import build

        self.cfg = config
        self.kind = build.contrastive_loss(config)
        self.clip_cfg, self.model = build.train_module(config)
        self.caption_len = int(config.data.get("caption_len", 32))
        self.layout = self.data.resolve_layout(self.requested_layout(config))

    def dims(self) -> dict[str, int]:
        size = self.clip_cfg.vision.image_size
        return {"H": size, "W": size, "C": self.caption_len}

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
        from mathjax_vl.models.build import DUAL_ENCODER_SCOPE

        img, txt = embeddings["image"], embeddings["text"]
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


OBJECTIVE = Objective(
    name="contrastive",
    data=CaptionData(),
    task=Contrastive,
    model_roles=("dual_encoder",),
    aliases=("image_caption",),
)
