"""MAVIS stage 2: projector alignment. The stage starts from the CLIP-Math tower (the run of
configs/mavis_clip_math.py, under `vision_tower/`), the LLM's HF dir (placed under
`language_model/` by its kind) and a fresh projector; only the MLP projector trains, on diagram-caption
conversations (a multimodal conversation dataset: "describe the diagram" -> caption).
Arg: `SIZE[,LLM]`: SIZE `1.5b` (default, Qwen2-1.5B), `7b` (the paper's MAVIS-7B: CLIP
ViT-L/14-336 + MAmmoTH2-7B, a Mistral-7B), `tiny` (a tiny CLIP + Mistral); LLM any registered
decoder (default: mistral for `7b` and `tiny`, qwen2 for `1.5b`).

MAVIS-7B (stage 1 is configs/mavis_clip_math.py:7b, stage 3 configs/mavis_cot_instruct.py:7b):

    mathjax-vl train --config configs/mavis_projector_align.py:7b --workdir /runs/mavis7b_2 \
        --config.data.dataset=/data/caption_conversations/1.0.0 \
        --config.data.tokenizer_dir=/models/MAmmoTH2-7B \
        --config.model.image_token_id=<the tokenizer's <image> id> \
        --config.init.sources='[{"path": "/runs/clip_math", "take": "clip/vision_model",
            "into": "vision_tower"}, {"path": "/models/MAmmoTH2-7B"}]' \
        --config.init.allow_missing='["^multi_modal_projector/"]'
    mathjax-vl compile --config configs/mavis_projector_align.py:7b --mesh data=1,fsdp=8,tensor=1

Qwen2-1.5B:

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
    size, llm = presets.parse_arg(arg, default_kinds=presets.MAVIS_DECODERS)
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
