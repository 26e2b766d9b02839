"""Math-PUMA-DeepSeek-Math-VL-7B, stage 2: KL alignment of vision-rich to text-rich problems on
DeepSeek-VL's hybrid (SAM-B 1024 px + SigLIP-L 384 px, split aligner, the stage-1 LLM).

Towers and aligner train, the LLM is frozen (REFERENCE.md section 2); loss and hyperparameters
as configs/puma_stage2_kl.py (alpha 0.2, tau 1, lambda 0.1, LR 5e-5, batch 512). Arg: SIZE `7b`
(default) or `tiny`. The towers start from DeepSeek-VL-7B (its released layout imports, see
docs/notes/deepseek_vl.md), the LLM from stage 1:

    mathjax-vl import-hf /models/deepseek-vl-7b-chat /ckpt/dsvl7b
    mathjax-vl train --config configs/deepseek_puma_stage2_kl.py:7b --workdir /runs/dsp2 \
        --config.data.dataset=/data/puma_kl/1.0.0 \
        --config.data.tokenizer_dir=/models/deepseek-vl-7b-chat \
        --config.init.checkpoint=/ckpt/dsvl7b
    mathjax-vl compile --config configs/deepseek_puma_stage2_kl.py:7b --mesh data=1,fsdp=8,tensor=1
"""

from mathjax_vl.recipes import deepseek_presets, presets
from mathjax_vl.train.config_base import base_config

TRAINABLE = ["^vision_tower/", "^high_res_vision_tower/", "^aligner_"]


def get_config(arg: str = "7b"):
    size = arg or "7b"
    c = base_config()
    c.task.name = "puma_kl"
    deepseek_presets.deepseek_vlm(c, size)
    presets.data_defaults(c, size)
    c.data.response_len = 384 if size == "tiny" else 512
    c.loss.update(alpha=0.2, lam=0.1, tau=1.0, normalization="token_mean", strong_grad=False)
    c.optim.trainable = list(TRAINABLE)
    c.train.global_batch_size = 8 if size == "tiny" else 512
    c.train.num_steps = 100 if size == "tiny" else 2000
    c.optim.update(learning_rate=5e-5, warmup_ratio=0.02, weight_decay=0.1)
    c.checkpoint.interval = 50 if size == "tiny" else 200
    return c
