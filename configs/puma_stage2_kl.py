"""Math-PUMA stage 2: KL alignment of vision-rich to text-rich versions of the same problem.

Vision tower and projector are trained, the LLM is frozen (REFERENCE.md section 2); loss =
lambda * (alpha * FKL + (1 - alpha) * RKL) * tau^2 + (1 - lambda) * CE with the paper's alpha 0.2,
tau 1, lambda 0.1 (the released code used alpha 0.5: --config.loss.alpha=0.5), fused so the
[tokens, vocab] logits are never held. The stage starts, as the paper's does, from the stage-1 LLM,
the pretrained SigLIP-so400m (a SiglipModel dir: its vision half) and a fresh aligner
(docs/notes/stage_init.md). Arg: `SIZE[,LLM]`: SIZE `1.5b` (default), `7b`, `tiny`; LLM any registered decoder (qwen2 default).

    mathjax-vl datagen --recipe puma_kl --n 120000 --workers 64 --out /data
    mathjax-vl train --config configs/puma_stage2_kl.py:1.5b --workdir /runs/puma2 \
        --config.data.dataset=/data/puma_kl/1.0.0 --config.data.tokenizer_dir=/models/Qwen2-1.5B-Instruct \
        --config.init.sources='[{"path": "/runs/puma1", "into": "language_model"},
            {"path": "/models/siglip-so400m-patch14-384", "take": "vision_model",
             "into": "vision_tower"}]' \
        --config.init.allow_missing='["^multi_modal_projector/"]'
    mathjax-vl compile --config configs/puma_stage2_kl.py:1.5b --mesh data=2,fsdp=4,tensor=1
"""

from mathjax_vl.recipes import presets
from mathjax_vl.train.config_base import base_config


def get_config(arg: str = "1.5b"):
    size, llm = presets.parse_arg(arg)
    c = base_config()
    c.task.name = "puma_kl"
    presets.vlm(c, size, presets.siglip_so400m(size), "swiglu", llm=llm)
    presets.data_defaults(c, size)
    c.data.response_len = 384 if size == "tiny" else 512
    c.loss.update(alpha=0.2, lam=0.1, tau=1.0, normalization="token_mean", strong_grad=False)
    c.optim.trainable = ["^vision_tower/", "^multi_modal_projector/"]
    c.train.global_batch_size = 8 if size == "tiny" else 512
    c.train.num_steps = 100 if size == "tiny" else 2000
    c.optim.update(learning_rate=5e-5, warmup_ratio=0.02, weight_decay=0.1)
    c.checkpoint.interval = 50 if size == "tiny" else 200
    return c
