"""Tiny multimodal next-token SFT (Math-PUMA stage 3 shape): tiny SigLIP + MLP projector +
Qwen2 on synthetic rows with 0-2 images.

    python -m mathjax_vl.cli.main train --config configs/tiny_multimodal_sft.py --workdir /tmp/tiny_multimodal_sft \
        --config.train.num_steps=20
"""

from mathjax_vl.train.config_base import base_config, tiny_vlm


def get_config(arg: str = ""):
    c = base_config()
    c.task.name = "multimodal_sft"
    tiny_vlm(c)
    c.data.seq_len = 48
    c.data.max_images = 2
    c.loss.impl = "fused"
    c.train.num_steps = 20
    c.train.global_batch_size = 8
    c.optim.learning_rate = 1e-3
    c.optim.warmup_ratio = 0.1
    c.checkpoint.interval = 10
    c.metrics.progress_bar = False
    return c
