"""Math-PUMA-DeepSeek-Math-VL-7B, stage 1: text-math SFT of DeepSeek-Math-7B (a Llama).

Arg: SIZE `7b` (default) or `tiny`. Paper: LR 3e-5, batch 256, 1 epoch, AdamW (0.9, 0.999),
weight decay 0.1, cosine with 2% warmup, max length 2048.

    mathjax-vl train --config configs/deepseek_puma_stage1_text_sft.py:7b --workdir /runs/dsp1 \
        --config.data.dataset=/data/text_sft/1.0.0 \
        --config.data.tokenizer_dir=/models/deepseek-math-7b-instruct \
        --config.init.hf_dir=/models/deepseek-math-7b-instruct
    mathjax-vl compile --config configs/deepseek_puma_stage1_text_sft.py:7b \
        --mesh data=1,fsdp=8,tensor=1
"""

import ml_collections

from mathjax_vl.recipes import presets
from mathjax_vl.train.config_base import base_config


def get_config(arg: str = "7b"):
    size = arg or "7b"
    c = base_config()
    c.task.name = "text_sft"
    c.model.kind = "llama"
    c.model.decoder = ml_collections.ConfigDict(presets.decoder("llama", size))
    presets.data_defaults(c, size)
    c.train.global_batch_size = 8 if size == "tiny" else 256
    c.train.num_steps = 100 if size == "tiny" else 2000
    c.optim.update(learning_rate=3e-5, warmup_ratio=0.02, weight_decay=0.1)
    c.checkpoint.interval = 50 if size == "tiny" else 200
    return c
