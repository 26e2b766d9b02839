"""Tiny random HF checkpoints written with `transformers` for tests, benchmarks and demos.

Nothing is downloaded: configs are built in code and saved with save_pretrained, the way the
parity tests need independent references. Requires torch + transformers (the dev extra).
"""

from __future__ import annotations

import os
from typing import Any

IMAGE_TOKEN_ID = 120
VOCAB = 128
# tiny Llava towers: name -> (transformers vision config class, has a class token)
TOWERS = {"siglip": ("SiglipVisionConfig", False), "clip": ("CLIPVisionConfig", True)}

DECODER_VOCAB = 97
DECODER_BASE = dict(
    vocab_size=DECODER_VOCAB,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    tie_word_embeddings=False,
)
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 10000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}
# name -> (transformers config class, model class, config fields)
DECODER_FAMILY = {
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {"rope_theta": 10000.0}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16, "rope_theta": 10000.0}),
    "llama": ("LlamaConfig", "LlamaForCausalLM", {"rope_parameters": LLAMA3_ROPE}),
    "llama_linear": (
        "LlamaConfig",
        "LlamaForCausalLM",
        {"rope_parameters": {"rope_type": "linear", "rope_theta": 500.0, "factor": 4.0}},
    ),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": 8, "head_dim": 8}),
}


def make_tiny_decoder(path: str, name: str, seed: int = 0, **overrides):
    """Saves a tiny random `name` model (a DECODER_FAMILY key) to `path`, float32, norms
    ~1 +- 0.1 and other tensors 0.2 N(0, 1) so every tensor and knob changes the logits;
    returns the torch model (eval). overrides: config fields."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch
    import transformers

    cfg_cls, model_cls, extra = DECODER_FAMILY[name]
    cfg = getattr(transformers, cfg_cls)(**{**DECODER_BASE, **extra, **overrides})
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(cfg).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            noise = torch.randn_like(p)
            p.copy_(1.0 + 0.1 * noise if "norm" in pname else 0.2 * noise)
    model.save_pretrained(path)
    return model


def make_tiny_llava(
    path: str,
    vision: str = "siglip",
    feature_layer: int | list[int] = -2,
    strategy: str = "default",
    tie: bool = False,
    seed: int = 0,
    vocab_size: int = VOCAB,
    image_token_id: int = IMAGE_TOKEN_ID,
    text_overrides: dict[str, Any] | None = None,
    text: str = "qwen2",
):
    """Writes a tiny LlavaForConditionalGeneration (SigLIP or CLIP tower + the `text` decoder, a
    DECODER_FAMILY name) to `path`; returns the torch model (eval mode)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    common = dict(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=16,
        patch_size=4,
    )
    if vision not in TOWERS:
        raise ValueError(f"vision must be one of {sorted(TOWERS)}, got {vision!r}")
    tower_cls, class_token = TOWERS[vision]
    vcfg = getattr(tf, tower_cls)(**common)
    cfg_cls, _, family_fields = DECODER_FAMILY[text]
    text_fields = dict(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab_size,
        tie_word_embeddings=tie,
        max_position_embeddings=512,
    )
    text_fields.update({"rope_theta": 10000.0, **family_fields})
    text_fields.update(text_overrides or {})
    tcfg = getattr(tf, cfg_cls)(**text_fields)
    n = vcfg.image_size // vcfg.patch_size
    seq = n * n + int(class_token) - (1 if strategy == "default" else 0)
    cfg = tf.LlavaConfig(
        vision_config=vcfg,
        text_config=tcfg,
        image_token_index=image_token_id,
        vision_feature_layer=feature_layer,
        vision_feature_select_strategy=strategy,
        image_seq_length=seq,
        tie_word_embeddings=tie,
    )
    model = tf.LlavaForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # non-trivial biases / norms so every tensor matters in parity tests
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(path)
    return model


INTERNVL_IMAGE_TOKEN_ID = 125


def make_tiny_internvl(
    path: str,
    text: str = "qwen2",
    seed: int = 0,
    image_size: int = 28,
    patch_size: int = 7,
    qk_norm: bool = False,
    norm_type: str = "layer_norm",
    tie: bool = False,
    text_overrides: dict[str, Any] | None = None,
):
    """Writes a tiny InternVLForConditionalGeneration (InternViT with q/k bias, layer scale;
    pixel shuffle 0.5; the `text` decoder, a DECODER_FAMILY name) to `path`; returns the torch
    model (eval). image_size / patch_size 28 / 7: a 4 x 4 patch grid -> 4 tokens per tile."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    vcfg = tf.InternVLVisionConfig(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        attention_bias=True,
        use_qk_norm=qk_norm,
        norm_type=norm_type,
    )
    cfg_cls, _, family_fields = DECODER_FAMILY[text]
    text_fields = dict(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        tie_word_embeddings=tie,
        max_position_embeddings=512,
    )
    text_fields.update({"rope_theta": 10000.0, **family_fields})
    text_fields.update(text_overrides or {})
    tcfg = getattr(tf, cfg_cls)(**text_fields)
    grid = image_size // patch_size
    cfg = tf.InternVLConfig(
        vision_config=vcfg,
        text_config=tcfg,
        image_token_id=INTERNVL_IMAGE_TOKEN_ID,
        image_seq_length=(grid // 2) ** 2,
        tie_word_embeddings=tie,
    )
    cfg._attn_implementation = "eager"
    model = tf.InternVLForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # non-trivial biases, norms, layer scales, class token, positions
        for name, p in model.named_parameters():
            if name.endswith(("bias", "lambda_1", "lambda_2", "cls_token")) or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
            if "position_embeddings" in name:
                p.copy_(0.1 * torch.randn_like(p))
    model.save_pretrained(path)
    return model
