"""Math-PUMA stage 3: multimodal instruction tuning of the whole VLM (LR 3e-5, batch 256).

Arg: `SIZE[,LLM]`: SIZE `1.5b` (default), `7b`, `tiny`; LLM any registered decoder (qwen2 default).

    mathjax-vl datagen --recipe multimodal_sft --n 200000 --workers 64 --out /data
    mathjax-vl train --config configs/puma_stage3_instruct.py:1.5b --workdir /runs/puma3 \
        --config.data.dataset=/data/multimodal_sft/1.0.0 --config.data.tokenizer_dir=/models/Qwen2-1.5B-Instruct \
        --config.init.checkpoint=/runs/puma2/checkpoints
    mathjax-vl eval --benchmark mathverse --data /bench/MathVerse/testmini.json \
        --image-root /bench/MathVerse/images --model /runs/puma3 \
        --train-config configs/puma_stage3_instruct.py:1.5b --out /runs/puma3/eval
    mathjax-vl compile --config configs/puma_stage3_instruct.py:1.5b --mesh data=1,fsdp=8,tensor=1
"""

from mathjax_vl.recipes import presets
from mathjax_vl.train.config_base import base_config


def get_config(arg: str = "1.5b"):
    size, llm = presets.parse_arg(arg)
    c = base_config()
    c.task.name = "multimodal_sft"
    presets.vlm(c, size, presets.siglip_so400m(size), "swiglu", llm=llm)
    presets.data_defaults(c, size)
    c.optim.trainable = [".*"]
    c.train.global_batch_size = 8 if size == "tiny" else 256
    c.train.num_steps = 100 if size == "tiny" else 4000
    c.optim.update(learning_rate=3e-5, warmup_ratio=0.02, weight_decay=0.1)
    c.checkpoint.interval = 50 if size == "tiny" else 200
    return c
