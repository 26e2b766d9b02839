"""MAVIS stage 3: chain-of-thought instruction tuning (MAVIS-Instruct-style problems with CoT
rationales from `mathjax-vl datagen --recipe multimodal_sft`), the whole VLM trained.
Arg: `SIZE[,LLM]`: SIZE `1.5b` (default, Qwen2-1.5B), `7b` (MAVIS-7B: CLIP ViT-L/14-336 +
MAmmoTH2-7B, a Mistral-7B), `tiny`; LLM any registered decoder (default: mistral for `7b` and
`tiny`, qwen2 for `1.5b`). MAVIS-7B stage 3 starts from its stage-2 run:

    mathjax-vl train --config configs/mavis_cot_instruct.py:7b --workdir /runs/mavis7b_3 \
        --config.data.dataset=/data/multimodal_sft/1.0.0 \
        --config.data.tokenizer_dir=/models/MAmmoTH2-7B \
        --config.init.sources='[{"path": "/runs/mavis7b_2"}]'

Qwen2-1.5B:

    mathjax-vl train --config configs/mavis_cot_instruct.py:1.5b --workdir /runs/mavis3 \
        --config.data.dataset=/data/multimodal_sft/1.0.0 --config.data.tokenizer_dir=/models/Qwen2-1.5B-Instruct \
        --config.init.checkpoint=/runs/mavis2/checkpoints
"""

from mathjax_vl.recipes import presets
from mathjax_vl.train.config_base import base_config


def get_config(arg: str = "1.5b"):
    size, llm = presets.parse_arg(arg, default_kinds=presets.MAVIS_DECODERS)
    c = base_config()
    c.task.name = "multimodal_sft"
    presets.vlm(c, size, presets.clip_vit_l14(size), "mlp", llm=llm)
    presets.data_defaults(c, size)
    c.optim.trainable = [".*"]
    c.train.global_batch_size = 8 if size == "tiny" else 256
    c.train.num_steps = 100 if size == "tiny" else 4000
    c.optim.update(learning_rate=1e-3 if size == "tiny" else 2e-5, warmup_ratio=0.02,
                   weight_decay=0.0)  # fmt: skip
    c.checkpoint.interval = 50 if size == "tiny" else 200
    return c
