"""MathCoder-VL FigCodifier: an image-to-code model trained on image-code pairs (figure -> the
Python program that draws it). Then the model-in-the-loop step grows the data:

    mathjax-vl datagen --recipe image_to_code --n 500000 --workers 64 --out /data
    mathjax-vl train --config configs/mathcoder_figcodifier.py:1.5b --workdir /runs/figcodifier \
        --config.data.dataset=/data/image_to_code/1.0.0 --config.data.tokenizer_dir=/models/Qwen2-1.5B-Instruct \
        --config.init.checkpoint=/runs/puma3/checkpoints
    mathjax-vl codify --model /runs/figcodifier --train-config configs/mathcoder_figcodifier.py:1.5b \
        --images /figures --out /data/codified --threshold 0.8

Arg: `SIZE[,LLM]`: SIZE `1.5b` (default), `7b`, `tiny`; LLM any registered decoder (qwen2 default).
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
    c.train.global_batch_size = 8 if size == "tiny" else 256
    c.train.num_steps = 100 if size == "tiny" else 4000
    c.optim.update(learning_rate=1e-3 if size == "tiny" else 2e-5, warmup_ratio=0.02,
                   weight_decay=0.0)  # fmt: skip
    c.checkpoint.interval = 50 if size == "tiny" else 200
    return c
