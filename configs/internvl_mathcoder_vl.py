"""MathCoder-VL-2B / -8B on InternVL2 (InternViT-300M-448px, dynamic 448 px tiles, pixel shuffle,
InternLM2-chat-1.8B / InternLM2.5-7B-chat). Two stages: `alignment` (image -> code on ImgCode-style
pairs from the FigCodifier loop) and `instruct` (MM-MathInstruct-style conversations).
Arg: `SIZE[,STAGE]`: SIZE `2b` (default), `8b`, `tiny`; STAGE `alignment` (default), `instruct`.
An InternVL2 checkpoint in the released layout imports directly (mathjax_vl.hf.internvl_chat):

    mathjax-vl train --config configs/internvl_mathcoder_vl.py:8b,alignment --workdir /runs/mcvl1 \
        --config.data.dataset=/data/codified/image_code/1.0.0 \
        --config.data.tokenizer_dir=/models/InternVL2-8B --config.init.hf_dir=/models/InternVL2-8B
    mathjax-vl train --config configs/internvl_mathcoder_vl.py:8b,instruct --workdir /runs/mcvl2 \
        --config.data.dataset=/data/mminstruct/mminstruct/1.0.0 \
        --config.data.tokenizer_dir=/models/InternVL2-8B --config.init.checkpoint=/runs/mcvl1/checkpoints
"""

from mathjax_vl.recipes import internvl_presets, presets
from mathjax_vl.train.config_base import base_config

STAGES = {"alignment": "image_to_code", "instruct": "multimodal_sft"}  # stage -> objective


def get_config(arg: str = "2b"):
    size, _, stage = (arg or "2b").partition(",")
    stage = stage or "alignment"
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {sorted(STAGES)}")
    c = base_config()
    c.task.name = STAGES[stage]
    presets.data_defaults(c, size, seq_len=4096)
    internvl_presets.internvl(c, size)
    c.optim.trainable = [".*"]
    c.train.global_batch_size = 8 if size == "tiny" else (512 if stage == "alignment" else 256)
    c.train.num_steps = 100 if size == "tiny" else 4000
    c.optim.update(learning_rate=1e-3 if size == "tiny" else 2e-5, warmup_ratio=0.03,
                   weight_decay=0.05)  # fmt: skip
    c.checkpoint.interval = 50 if size == "tiny" else 200
    return c
