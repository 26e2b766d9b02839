"""Math-PUMA-DeepSeek-Math-VL-7B, stage 3: multimodal instruction tuning of the whole hybrid
(LR 3e-5, batch 256). Arg: SIZE `7b` (default) or `tiny`.

    mathjax-vl train --config configs/deepseek_puma_stage3_instruct.py:7b --workdir /runs/dsp3 \
        --config.data.dataset=/data/multimodal_sft/1.0.0 \
        --config.data.tokenizer_dir=/models/deepseek-vl-7b-chat \
        --config.init.checkpoint=/runs/dsp2/checkpoints
    mathjax-vl compile --config configs/deepseek_puma_stage3_instruct.py:7b \
        --mesh data=1,fsdp=8,tensor=1
"""

from mathjax_vl.recipes import deepseek_presets, presets
from mathjax_vl.train.config_base import base_config


def get_config(arg: str = "7b"):
    size = arg or "7b"
    c = base_config()
    c.task.name = "multimodal_sft"
    deepseek_presets.deepseek_vlm(c, size)
    presets.data_defaults(c, size)
    c.optim.trainable = [".*"]
    c.train.global_batch_size = 8 if size == "tiny" else 256
    c.train.num_steps = 100 if size == "tiny" else 4000
    c.optim.update(learning_rate=3e-5, warmup_ratio=0.02, weight_decay=0.1)
    c.checkpoint.interval = 50 if size == "tiny" else 200
    return c
