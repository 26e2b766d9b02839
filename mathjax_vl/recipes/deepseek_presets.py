"""Model presets of Math-PUMA-DeepSeek-Math-VL-7B (DeepSeek-VL's hybrid over DeepSeek-Math-7B)
for the configs/deepseek_puma_stage*.py recipes, at the published size and a CPU-sized tiny one.

Published: SigLIP-L/16 at 384 px (1024 wide, 24 layers; 576 tokens), SAM-B at 1024 px (768
wide, 12 layers, windows of 14, global attention at 2/5/8/11, neck 256 -> downsampled to 1024
channels on the same 24 x 24 grid), the split aligner into a 4096-wide Llama (DeepSeek-Math-7B:
30 layers, vocab 102400), image token <image_placeholder> = 100015.
"""

from __future__ import annotations

import ml_collections

from mathjax_vl.recipes import presets

IMAGE_TOKEN_ID = 100015


def siglip_large(size: str) -> dict:
    if size == "tiny":
        return dict(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                    image_size=32, patch_size=8, hidden_act="gelu", use_head=False)  # fmt: skip
    return dict(
        hidden_size=1024, intermediate_size=4096, num_layers=24, num_heads=16, image_size=384,
        patch_size=16, hidden_act="gelu", use_head=False, **presets._REAL_NUMERICS,
    )  # fmt: skip


def sam_b(size: str) -> dict:
    if size == "tiny":  # an 8 x 8 grid, windows of 3 (padded), global attention in layer 1
        return dict(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                    image_size=64, patch_size=8, output_channels=8, window_size=3,
                    global_attn_indexes=(1,))  # fmt: skip
    return dict(
        hidden_size=768, intermediate_size=3072, num_layers=12, num_heads=12, image_size=1024,
        patch_size=16, output_channels=256, window_size=14, global_attn_indexes=(2, 5, 8, 11),
        **presets._REAL_NUMERICS,
    )  # fmt: skip


def deepseek_vlm(c: ml_collections.ConfigDict, size: str) -> None:
    """Fills c.model with the DeepSeek-VL hybrid of `size` ("7b" or "tiny")."""
    c.model.kind = "deepseek_vl_hybrid"
    c.model.decoder = ml_collections.ConfigDict(presets.decoder("llama", size))
    c.model.vision = ml_collections.ConfigDict(siglip_large(size))
    c.model.high_res_vision = ml_collections.ConfigDict(sam_b(size))
    c.model.image_token_id = presets.image_token_id("tiny") if size == "tiny" else IMAGE_TOKEN_ID
    c.model.low_res_resample = "bilinear"  # DeepSeek-VL's 1024 -> 384 px resize
    if size != "tiny":
        c.model.dtype = "bfloat16"
