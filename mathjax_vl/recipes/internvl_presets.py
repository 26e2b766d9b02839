"""InternVL presets for the MathCoder-VL / FigCodifier recipes (configs/internvl_*.py).

MathCoder-VL-2B and -8B and FigCodifier-8B are InternVL2 models: InternViT-300M-448px (24 layers,
width 1024, q/k/v bias, LayerNorm, layer scale), pixel shuffle 0.5 (256 tokens per 448 px tile),
InternVL's LayerNorm + MLP projector, over InternLM2-chat-1.8B (2B) or InternLM2.5-7B-chat (8B).
InternLM2 is the Llama architecture with fused weights (mathjax_vl.hf.internvl_chat splits them),
so the decoder kind is "llama". `<IMG_CONTEXT>` is id 92546 in the InternLM2 tokenizer.
Sizes: `2b`, `8b`, `tiny` (CPU tests: a 28 px tile of 7 px patches -> 4 tokens, up to 2 tiles +
the thumbnail per image).
"""

from __future__ import annotations

import ml_collections

SIZES = ("2b", "8b", "tiny")
IMAGE_CONTEXT_ID = 92546
_REAL = {"remat_policy": "full", "dtype": "bfloat16", "param_dtype": "float32"}
# Tiles per image in training (InternVL2's fine-tuning scripts use max_dynamic_patch 6), plus the
# thumbnail: the row's image budget (data.max_images) counts tiles.
TRAIN_MAX_TILES = 6


def _check(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"unknown InternVL size {size!r}; expected one of {SIZES}")


def internvit_300m(size: str) -> dict:
    _check(size)
    if size == "tiny":
        return dict(kind="internvl_vision", hidden_size=32, intermediate_size=64, num_layers=2,
                    num_heads=4, image_size=28, patch_size=7, max_num_tiles=2)  # fmt: skip
    return dict(
        kind="internvl_vision", hidden_size=1024, intermediate_size=4096, num_layers=24,
        num_heads=16, image_size=448, patch_size=14, qkv_bias=True, norm_type="layer_norm",
        max_num_tiles=TRAIN_MAX_TILES, **_REAL,
    )  # fmt: skip


def internlm2(size: str) -> dict:
    """InternLM2-chat-1.8B (2b) / InternLM2.5-7B-chat (8b) in the Llama layout."""
    _check(size)
    common = dict(kind="llama", vocab_size=92553, rope_theta=1_000_000.0, rms_norm_eps=1e-5,
                  max_position_embeddings=32768, tie_word_embeddings=False, **_REAL)  # fmt: skip
    if size == "2b":
        return dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
                    num_attention_heads=16, num_key_value_heads=8, **common)  # fmt: skip
    if size == "8b":
        return dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, **common)  # fmt: skip
    return dict(
        kind="llama", vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, rope_theta=10000.0,
        tie_word_embeddings=False, max_position_embeddings=4096,
    )  # fmt: skip


def internvl(c: ml_collections.ConfigDict, size: str) -> None:
    """Fills c.model with InternVL2 at `size` and sets the row's tile budget (data.max_images)."""
    vision, text = internvit_300m(size), internlm2(size)
    r = 2  # 1 / downsample_ratio
    c.model.kind = "internvl"
    c.model.vision = ml_collections.ConfigDict(vision)
    c.model.decoder = ml_collections.ConfigDict(text)
    proj = {"kind": "internvl_mlp", "input_dim": vision["hidden_size"] * r * r,
            "output_dim": text["hidden_size"], "act": "gelu"}  # fmt: skip
    if size != "tiny":
        proj.update(dtype="bfloat16", param_dtype="float32")
    c.model.projector = ml_collections.ConfigDict(proj)
    c.model.image_token_id = 3 if size == "tiny" else IMAGE_CONTEXT_ID
    c.model.vision_feature_layer = -1
    c.model.vision_feature_select_strategy = "default"
    c.model.downsample_ratio = 1.0 / r
    c.data.max_images = vision["max_num_tiles"] + 1  # one image's tiles + its thumbnail
