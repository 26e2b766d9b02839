"""Tiny text-only next-token SFT (Math-PUMA stage 1 shape) on synthetic data, for tests and demos.

    python -m mathjax_vl.cli.main train --config configs/tiny_text_sft.py --workdir /tmp/tiny_sft \
        --config.train.num_steps=20
"""

from mathjax_vl.train.config_base import base_config, tiny_decoder


def get_config(arg: str = ""):
    c = base_config()
    c.task.name = "text_sft"
    c.model.kind = "qwen2"
    c.model.decoder.update(tiny_decoder())
    c.loss.impl = "naive"
    c.data.seq_len = 32
    c.data.num_examples = 256
    c.train.num_steps = 20
    c.train.global_batch_size = 8
    c.optim.learning_rate = 1e-3
    c.optim.warmup_ratio = 0.1
    c.checkpoint.interval = 10
    c.metrics.progress_bar = False
    return c
