"""Math-PUMA stage 1: text-math SFT of the LLM (Qwen2), before any image is seen.

Arg: `SIZE[,LLM]`, SIZE `1.5b` (default), `7b` or `tiny` (CPU), LLM qwen2 (default), qwen3, llama
or mistral. Paper: LR 3e-5, batch 256, 1 epoch,
AdamW (0.9, 0.999), weight decay 0.1, cosine with 2% warmup, max length 2048.

    mathjax-vl import-hf /models/Qwen2-1.5B-Instruct /ckpt/qwen2_1p5b
    mathjax-vl train --config configs/puma_stage1_text_sft.py:1.5b --workdir /runs/puma1 \
        --config.data.dataset=/data/text_sft/1.0.0 --config.data.tokenizer_dir=/models/Qwen2-1.5B-Instruct \
        --config.init.hf_dir=/models/Qwen2-1.5B-Instruct --config.train.num_steps=2000
    mathjax-vl compile --config configs/puma_stage1_text_sft.py:1.5b --mesh data=1,fsdp=8,tensor=1
"""

import ml_collections

from mathjax_vl.recipes import presets
from mathjax_vl.train.config_base import base_config


def get_config(arg: str = "1.5b"):
    size, llm = presets.parse_arg(arg)
    c = base_config()
    c.task.name = "text_sft"
    c.model.kind = llm
    c.model.decoder = ml_collections.ConfigDict(presets.decoder(llm, size))
    presets.data_defaults(c, size)
    c.train.global_batch_size = 8 if size == "tiny" else 256
    c.train.num_steps = 100 if size == "tiny" else 2000
    c.optim.update(learning_rate=3e-5, warmup_ratio=0.02, weight_decay=0.1)
    c.checkpoint.interval = 50 if size == "tiny" else 200
    return c
