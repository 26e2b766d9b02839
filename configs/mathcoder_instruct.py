"""MathCoder-VL stage 2: math instruction tuning (MM-MathInstruct-style conversations) of the
aligned VLM. Arg: `SIZE[,LLM]`: SIZE `1.5b` (default), `7b`, `tiny`; LLM any registered decoder (qwen2 default).

    mathjax-vl data import /data/MM-MathInstruct --format mminstruct --out /data/mminstruct
    mathjax-vl train --config configs/mathcoder_instruct.py:1.5b --workdir /runs/mathcoder2 \
        --config.data.dataset=/data/mminstruct/mminstruct/1.0.0 \
        --config.data.tokenizer_dir=/models/Qwen2-1.5B-Instruct \
        --config.init.checkpoint=/runs/mathcoder1/checkpoints
"""

from mathjax_vl.recipes import presets
from mathjax_vl.train.config_base import base_config


def get_config(arg: str = "1.5b"):
    size, llm = presets.parse_arg(arg)
    c = base_config()
    c.task.name = "multimodal_sft"
    presets.vlm(c, size, presets.siglip_so400m(size), "mlp", llm=llm)
    presets.data_defaults(c, size)
    c.optim.trainable = [".*"]
    c.train.global_batch_size = 8 if size == "tiny" else 256
    c.train.num_steps = 100 if size == "tiny" else 4000
    c.optim.update(learning_rate=1e-3 if size == "tiny" else 2e-5, warmup_ratio=0.02,
                   weight_decay=0.0)  # fmt: skip
    c.checkpoint.interval = 50 if size == "tiny" else 200
    return c
