"""MAVIS final stage: DPO on verified preference pairs (`mathjax-vl datagen --recipe preference`:
chosen = the verified CoT solution, rejected = a full solution on a typical mistake whose answer
the family's verifier rejects). Policy and frozen reference both start from the stage-3 run
(one init source filling two subtrees). Arg: `SIZE[,LLM]`: `1.5b` (default), `7b`, `tiny`.

    mathjax-vl datagen --recipe preference --n 20000 --workers 16 --out /data/preference
    mathjax-vl train --config configs/mavis_dpo.py:1.5b --workdir /runs/mavis_dpo \
        --config.data.dataset=/data/preference/preference/1.0.0 \
        --config.data.tokenizer_dir=/models/Qwen2-1.5B-Instruct \
        --config.init.sources='[{"path": "/runs/mavis3/checkpoints", "into": ["policy", "reference"]}]'
    mathjax-vl train --config configs/mavis_dpo.py:tiny --workdir /tmp/mavis_dpo_tiny

The tiny variant trains on synthetic pairs. Reading PreferencePair datasets through the Grain
pipeline needs the `preference` pipeline objective (not yet wired: docs/notes/dpo.md).
"""

from mathjax_vl.recipes import presets
from mathjax_vl.train.config_base import base_config, tiny_vlm


def get_config(arg: str = "1.5b"):
    size, llm = presets.parse_arg(arg)
    c = base_config()
    c.task.name = "preference"
    if size == "tiny":
        tiny_vlm(c)
        c.data.seq_len = 48
        c.data.max_images = 1
    else:
        presets.vlm(c, size, presets.clip_vit_l14(size), "mlp", llm=llm)
        presets.data_defaults(c, size, "preference")
    c.optim.frozen = ["^reference/"]  # no updates, no moments, no weight decay
    c.loss.update(beta=0.1, label_smoothing=0.0, dpo_loss_type="sigmoid", impl="fused")
    c.train.global_batch_size = 8 if size == "tiny" else 128
    c.train.num_steps = 40 if size == "tiny" else 1000
    c.optim.update(learning_rate=1e-3 if size == "tiny" else 5e-7, warmup_ratio=0.1,
                   weight_decay=0.0)  # fmt: skip
    c.checkpoint.interval = 20 if size == "tiny" else 200
    return c
