"""MAVIS stage 1: CLIP-Math, a math-specialised vision encoder trained contrastively on
diagram-caption pairs (MAVIS: 558K pairs). A CLIP ViT-L/14 dual encoder (`--config.loss.contrastive
=siglip` for the sigmoid loss). Arg: `large` (default; `7b` means the same tower, MAVIS-7B's stage 1) or `tiny`.

    mathjax-vl import-hf /models/clip-vit-large-patch14-336 /ckpt/clip_l14
    mathjax-vl datagen --recipe contrastive --n 558000 --workers 64 --out /data
    mathjax-vl train --config configs/mavis_clip_math.py --workdir /runs/clip_math \
        --config.data.dataset=/data/contrastive/1.0.0 --config.data.tokenizer_dir=/models/clip-vit-large-patch14-336 \
        --config.init.hf_dir=/models/clip-vit-large-patch14-336
"""

import ml_collections

from mathjax_vl.recipes import presets
from mathjax_vl.train.config_base import base_config


def get_config(arg: str = "large"):
    size = "tiny" if arg == "tiny" else "large"
    c = base_config()
    c.task.name = "contrastive"
    c.model.kind = "dual_encoder"
    vision = presets.clip_vit_l14(size)
    vision.pop("kind")
    c.model.vision = ml_collections.ConfigDict(vision)
    c.model.text = ml_collections.ConfigDict(presets.clip_text(size))
    c.model.projection_dim = 32 if size == "tiny" else 768
    presets.data_defaults(c, "tiny" if size == "tiny" else "1.5b")
    c.data.caption_len = c.model.text.max_position_embeddings
    c.loss.contrastive = "clip"
    c.train.global_batch_size = 8 if size == "tiny" else 4096
    c.train.num_steps = 100 if size == "tiny" else 5000
    c.optim.update(learning_rate=1e-3 if size == "tiny" else 2e-5, warmup_ratio=0.02,
                   weight_decay=0.1)  # fmt: skip
    c.checkpoint.interval = 50 if size == "tiny" else 500
    return c
