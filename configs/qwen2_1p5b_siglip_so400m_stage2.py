"""Math-PUMA stage 2 at paper scale: SigLIP-so400m/14 @ 384 px + SwiGLU projector + Qwen2-1.5B,
paired KL alignment, vision tower and projector trained, LLM frozen (REFERENCE.md section 2).

Check that it fits a mesh before renting it (abstract shapes only, nothing allocated):

    python -m mathjax_vl.cli.main compile --config configs/qwen2_1p5b_siglip_so400m_stage2.py \
        --mesh data=1,fsdp=8,tensor=1
    python -m mathjax_vl.cli.main compile --config configs/qwen2_1p5b_siglip_so400m_stage2.py \
        --mesh data=2,fsdp=8,tensor=4

Train (a real run needs data.kind = "pipeline"); it starts from the stage-1 LLM, the pretrained
SigLIP-so400m tower and a fresh projector (docs/notes/stage_init.md):

    python -m mathjax_vl.cli.main train --config configs/qwen2_1p5b_siglip_so400m_stage2.py \
        --workdir gs://bucket/stage2 \
        --config.init.sources='[{"path": "/runs/puma1", "into": "language_model"},
            {"path": "/models/siglip-so400m-patch14-384", "take": "vision_model",
             "into": "vision_tower"}]' \
        --config.init.allow_missing='["^multi_modal_projector/"]'
"""

import ml_collections

from mathjax_vl.train.config_base import base_config


def get_config(arg: str = ""):
    c = base_config()
    c.task.name = "puma_kl"
    c.model.kind = "vlm"
    c.model.decoder = ml_collections.ConfigDict(
        dict(
            vocab_size=151936,
            hidden_size=1536,
            intermediate_size=8960,
            num_hidden_layers=28,
            num_attention_heads=12,
            num_key_value_heads=2,
            rope_theta=1_000_000.0,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            max_position_embeddings=32768,
            remat_policy="full",
            dtype="bfloat16",
            param_dtype="float32",
        )
    )
    c.model.vision = ml_collections.ConfigDict(
        dict(
            kind="siglip",
            hidden_size=1152,
            intermediate_size=4304,
            num_layers=27,
            num_heads=16,
            image_size=378,  # 27 x 14: vit.PatchEmbed rejects 384 (HF floors to 27 patches)
            patch_size=14,
            remat_policy="full",
            dtype="bfloat16",
            param_dtype="float32",
        )
    )
    c.model.projector = ml_collections.ConfigDict(
        dict(kind="swiglu", input_dim=1152, output_dim=1536, hidden_dim=1536,
             dtype="bfloat16", param_dtype="float32")
    )  # fmt: skip
    c.model.image_token_id = 151646
    c.model.vision_feature_layer = -2
    c.model.vision_feature_select_strategy = "default"  # 729 patches -> 728 image tokens

    c.data.seq_len = 2048  # Math-PUMA max length
    c.data.max_images = 1
    c.data.response_len = 512
    c.loss.update(
        impl="fused", alpha=0.2, lam=0.1, tau=1.0, normalization="token_mean",
        strong_grad=False, token_block=1024, vocab_block=8192, matmul_dtype="bfloat16",
    )  # fmt: skip
    c.train.num_steps = 2000
    c.train.global_batch_size = 512  # paper: 512 for stage 2
    c.train.grad_accum_steps = 1
    c.optim.update(learning_rate=5e-5, warmup_ratio=0.02, weight_decay=0.1, grad_clip_norm=1.0)
    c.optim.trainable = ["^vision_tower/", "^multi_modal_projector/"]
    c.mesh.shape = {"data": 1, "fsdp": -1, "tensor": 1}
    c.checkpoint.interval = 200
    return c
