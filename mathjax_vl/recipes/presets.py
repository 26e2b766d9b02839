"""Model presets shared by the recipe configs under configs/ (real sizes and a CPU-sized tiny one).

Sizes are those of the public checkpoints the papers start from (REFERENCE.md section 2): Qwen2-1.5B
/ 7B-Instruct, SigLIP-so400m/14 at 384 px, CLIP ViT-L/14 at 336 px (MAVIS's CLIP-Math starts from
CLIP). Paper-scale presets use bfloat16 compute with float32 master weights and full remat.
"""

from __future__ import annotations

import ml_collections

SIZES = ("1.5b", "7b", "tiny")

_REAL_NUMERICS = {"remat_policy": "full", "dtype": "bfloat16", "param_dtype": "float32"}


def qwen2(size: str) -> dict:
    if size == "1.5b":
        return dict(
            vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
            num_attention_heads=12, num_key_value_heads=2, rope_theta=1_000_000.0,
            rms_norm_eps=1e-6, tie_word_embeddings=True, max_position_embeddings=32768,
            **_REAL_NUMERICS,
        )  # fmt: skip
    if size == "7b":
        return dict(
            vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
            num_attention_heads=28, num_key_value_heads=4, rope_theta=1_000_000.0,
            rms_norm_eps=1e-6, tie_word_embeddings=False, max_position_embeddings=32768,
            **_REAL_NUMERICS,
        )  # fmt: skip
    if size == "tiny":
        return dict(
            vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, rope_theta=10000.0,
            tie_word_embeddings=True, max_position_embeddings=4096,
        )  # fmt: skip
    raise ValueError(f"unknown model size {size!r}; expected one of {SIZES}")


def siglip_so400m(size: str) -> dict:
    if size == "tiny":
        return dict(kind="siglip", hidden_size=64, intermediate_size=128, num_layers=2,
                    num_heads=4, image_size=64, patch_size=16)  # fmt: skip
    return dict(
        kind="siglip", hidden_size=1152, intermediate_size=4304, num_layers=27, num_heads=16,
        image_size=384, patch_size=14, **_REAL_NUMERICS,
    )  # fmt: skip


def clip_vit_l14(size: str) -> dict:
    if size == "tiny":
        return dict(kind="clip", hidden_size=64, intermediate_size=128, num_layers=2,
                    num_heads=4, image_size=64, patch_size=16)  # fmt: skip
    return dict(
        kind="clip", hidden_size=1024, intermediate_size=4096, num_layers=24, num_heads=16,
        image_size=336, patch_size=14, **_REAL_NUMERICS,
    )  # fmt: skip


def clip_text(size: str, vocab_size: int = 49408) -> dict:
    if size == "tiny":
        return dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_layers=2,
                    num_heads=4, max_position_embeddings=96, eos_token_id=2)  # fmt: skip
    return dict(vocab_size=vocab_size, hidden_size=768, intermediate_size=3072, num_layers=12,
                num_heads=12, max_position_embeddings=77, eos_token_id=49407)  # fmt: skip


def image_token_id(size: str) -> int:
    """Qwen2's <|image_pad|>-style id used by Math-PUMA (151646); the tiny tokenizer's <image>."""
    return 3 if size == "tiny" else 151646


def vlm(
    c: ml_collections.ConfigDict,
    size: str,
    vision: dict,
    projector: str,
    feature_layer: int = -2,
    select: str = "default",
) -> None:
    """Fills c.model with a vision tower + projector + Qwen2 VLM of `size`."""
    decoder = qwen2(size)
    c.model.kind = "vlm"
    c.model.decoder = ml_collections.ConfigDict(decoder)
    c.model.vision = ml_collections.ConfigDict(vision)
    proj = {"kind": projector, "input_dim": vision["hidden_size"],
            "output_dim": decoder["hidden_size"]}  # fmt: skip
    proj["hidden_dim"] = decoder["hidden_size"]  # swiglu's inner width; the mlp's anyway
    if size != "tiny":
        proj.update(dtype="bfloat16", param_dtype="float32")
    c.model.projector = ml_collections.ConfigDict(proj)
    c.model.image_token_id = image_token_id(size)
    c.model.vision_feature_layer = feature_layer
    c.model.vision_feature_select_strategy = select


def data_defaults(
    c: ml_collections.ConfigDict, size: str, objective: str, seq_len: int = 2048
) -> None:
    """Real data through the Grain pipeline; dataset and tokenizer dirs come from the command
    line (--config.data.dataset=... --config.data.tokenizer_dir=...)."""
    c.data.kind = "pipeline"
    c.data.objective = objective
    c.data.dataset = ""
    c.data.split = "train"
    c.data.tokenizer_dir = ""
    c.data.seq_len = 512 if size == "tiny" else seq_len
    c.data.max_images = 1
    c.data.num_workers = 0 if size == "tiny" else 8
    c.data.bad_records = {"policy": "skip", "max_skipped_fraction": 0.01}
    if size != "tiny":
        c.loss.matmul_dtype = "bfloat16"
