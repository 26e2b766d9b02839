"""MathCoder-VL stage 1: cross-modal alignment of the VLM on image-code pairs (ImgCode-style data
from the FigCodifier loop), vision tower + projector + LLM trained on image -> code.
Arg: `SIZE[,LLM]`: SIZE `1.5b` (default), `7b`, `tiny`; LLM any registered decoder (qwen2 default).

    mathjax-vl train --config configs/mathcoder_alignment.py:1.5b --workdir /runs/mathcoder1 \
        --config.data.dataset=/data/codified/image_code/1.0.0 \
        --config.data.tokenizer_dir=/models/Qwen2-1.5B-Instruct --config.init.hf_dir=/models/llava_qwen2
"""

from mathjax_vl.recipes import presets
from mathjax_vl.train.config_base import base_config


def get_config(arg: str = "1.5b"):
    size, llm = presets.parse_arg(arg)
    c = base_config()
    c.task.name = "image_to_code"
    presets.vlm(c, size, presets.siglip_so400m(size), "mlp", llm=llm)
    presets.data_defaults(c, size, seq_len=4096)
    c.optim.trainable = [".*"]
    c.train.global_batch_size = 8 if size == "tiny" else 512
    c.train.num_steps = 100 if size == "tiny" else 4000
    c.optim.update(learning_rate=1e-3 if size == "tiny" else 2e-5, warmup_ratio=0.02,
                   weight_decay=0.0)  # fmt: skip
    c.checkpoint.interval = 50 if size == "tiny" else 200
    return c
