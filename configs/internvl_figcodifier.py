"""FigCodifier-8B on InternVL2-8B: image -> code (figure -> the Python / TikZ program that draws
it), trained on image-code pairs; the model-in-the-loop step then grows the data.
Arg: SIZE `8b` (default), `2b`, `tiny`.

    mathjax-vl datagen --recipe image_to_code --n 500000 --workers 64 --out /data
    mathjax-vl train --config configs/internvl_figcodifier.py:8b --workdir /runs/figcodifier8b \
        --config.data.dataset=/data/image_to_code/1.0.0 --config.data.tokenizer_dir=/models/InternVL2-8B \
        --config.init.hf_dir=/models/InternVL2-8B
"""

from mathjax_vl.recipes import internvl_presets, presets
from mathjax_vl.train.config_base import base_config


def get_config(arg: str = "8b"):
    size = arg or "8b"
    c = base_config()
    c.task.name = "image_to_code"
    presets.data_defaults(c, size, seq_len=4096)
    internvl_presets.internvl(c, size)
    c.optim.trainable = [".*"]
    c.train.global_batch_size = 8 if size == "tiny" else 256
    c.train.num_steps = 100 if size == "tiny" else 4000
    c.optim.update(learning_rate=1e-3 if size == "tiny" else 2e-5, warmup_ratio=0.03,
                   weight_decay=0.05)  # fmt: skip
    c.checkpoint.interval = 50 if size == "tiny" else 200
    return c
