"""MAVIS stage 2: projector alignment. The stage starts from the CLIP-Math tower (the run of
configs/mavis_clip_math.py, under `vision_tower/`), the LLM's HF dir (placed under
`language_model/` by its kind) and a fresh projector; only the MLP projector trains, on diagram-caption
conversations (a multimodal conversation dataset: "describe the diagram" -> caption).
Arg: `SIZE[,LLM]`: SIZE `1.5b` (default), `7b`, `tiny`; LLM any registered decoder (qwen2 default).

    mathjax-vl train --config configs/mavis_projector_align.py:1.5b --workdir /runs/mavis2 \
        --config.data.dataset=/data/caption_conversations/1.0.0 \
        --config.data.tokenizer_dir=/models/Qwen2-1.5B-Instruct \
        --config.init.sources='[{"path": "/runs/clip_math", "take": "clip/vision_model",
            "into": "vision_tower"}, {"path": "/models/Qwen2-1.5B-Instruct"}]' \
        --config.init.allow_missing='["^multi_modal_projector/"]'
"""

from mathjax_vl.recipes import presets
from mathjax_vl.train.config_base import base_config


def get_config(arg: str = "1.5b"):
    size, llm = presets.parse_arg(arg)
    c = base_config()
    c.task.name = "multimodal_sft"
    presets.vlm(c, size, presets.clip_vit_l14(size), "mlp", llm=llm)
    presets.data_defaults(c, size)
    c.optim.trainable = ["^multi_modal_projector/"]
    c.train.global_batch_size = 8 if size == "tiny" else 256
    c.train.num_steps = 100 if size == "tiny" else 2000
    c.optim.update(learning_rate=1e-3 if size == "tiny" else 2e-5, warmup_ratio=0.02,
                   weight_decay=0.0)  # fmt: skip
    c.checkpoint.interval = 50 if size == "tiny" else 200
    return c
