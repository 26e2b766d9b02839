"""Model presets shared by the recipe configs under configs/ (real sizes and a CPU-sized tiny one).

Sizes are those of the public checkpoints the papers start from (REFERENCE.md section 2): Qwen2-1.5B
/ 7B-Instruct, SigLIP-so400m/14 at 384 px, CLIP ViT-L/14 at 336 px (MAVIS's CLIP-Math starts from
CLIP). Paper-scale presets use bfloat16 compute with float32 master weights and full remat.

The LLM is any registered decoder: `decoder(kind, size)` gives the nearest public checkpoint of
that family (qwen2: Qwen2-1.5B / 7B; qwen3: Qwen3-1.7B / 8B; llama: Llama-3.2-1B / DeepSeek-Math-7B;
mistral: Mistral-7B-v0.2, MAmmoTH2-7B's base), and a recipe arg `SIZE[,KIND]` (e.g.
`configs/puma_stage1_text_sft.py:7b,mistral`) picks it (`parse_arg`).
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


def _tiny_decoder(**knobs) -> dict:
    return {**qwen2("tiny"), **knobs}


def qwen3(size: str) -> dict:
    common = dict(vocab_size=151936, num_key_value_heads=8, head_dim=128, rope_theta=1_000_000.0,
                  rms_norm_eps=1e-6, max_position_embeddings=40960, **_REAL_NUMERICS)  # fmt: skip
    if size == "1.5b":  # Qwen3-1.7B
        return dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                    num_attention_heads=16, tie_word_embeddings=True, **common)  # fmt: skip
    if size == "7b":  # Qwen3-8B
        return dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                    num_attention_heads=32, tie_word_embeddings=False, **common)  # fmt: skip
    if size == "tiny":
        return _tiny_decoder(tie_word_embeddings=False)
    raise ValueError(f"unknown model size {size!r}; expected one of {SIZES}")


def llama(size: str) -> dict:
    if size == "1.5b":  # Llama-3.2-1B (llama3 RoPE scaling)
        return dict(
            vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
            num_attention_heads=32, num_key_value_heads=8, head_dim=64, rope_theta=500000.0,
            rope_type="llama3", rope_factor=32.0, rope_low_freq_factor=1.0,
            rope_high_freq_factor=4.0, rope_original_max_position_embeddings=8192,
            rms_norm_eps=1e-5, tie_word_embeddings=True, max_position_embeddings=131072,
            **_REAL_NUMERICS,
        )  # fmt: skip
    if size == "7b":  # DeepSeek-Math-7B (LlamaForCausalLM)
        return dict(
            vocab_size=102400, hidden_size=4096, intermediate_size=11008, num_hidden_layers=30,
            num_attention_heads=32, num_key_value_heads=32, rope_theta=10000.0,
            rms_norm_eps=1e-6, tie_word_embeddings=False, max_position_embeddings=4096,
            **_REAL_NUMERICS,
        )  # fmt: skip
    if size == "tiny":
        return _tiny_decoder(rope_type="llama3", rope_factor=8.0,
                             rope_original_max_position_embeddings=256)  # fmt: skip
    raise ValueError(f"unknown model size {size!r}; expected one of {SIZES}")


def mistral(size: str) -> dict:
    if size == "7b":  # Mistral-7B-v0.2 (MAmmoTH2-7B's base)
        return dict(
            vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
            num_attention_heads=32, num_key_value_heads=8, rope_theta=1_000_000.0,
            rms_norm_eps=1e-5, tie_word_embeddings=False, max_position_embeddings=32768,
            sliding_window=None, **_REAL_NUMERICS,
        )  # fmt: skip
    if size == "tiny":
        return _tiny_decoder(tie_word_embeddings=False, sliding_window=256)
    raise ValueError(f"mistral has no {size!r} preset; expected '7b' or 'tiny'")


DECODERS = {"qwen2": qwen2, "qwen3": qwen3, "llama": llama, "mistral": mistral}
DEFAULT_DECODER = "qwen2"


def decoder(kind: str, size: str) -> dict:
    """The decoder preset of `kind` at `size`, with its `kind` (a model.decoder block)."""
    if kind not in DECODERS:
        from mathjax_vl.models import registry

        registry.get(kind, "decoder")  # unregistered -> error listing the registered kinds
        raise ValueError(f"no preset for decoder kind {kind!r}; presets: {sorted(DECODERS)}")
    return {"kind": kind, **DECODERS[kind](size)}


def parse_arg(
    arg: str | None, default_size: str = "1.5b", default_kinds: dict[str, str] | None = None
) -> tuple[str, str]:
    """A recipe arg `SIZE[,KIND]` -> (size, decoder kind); KIND defaults to
    `default_kinds[size]` (a recipe whose paper model is another family, e.g. MAVIS-7B's
    Mistral), else qwen2."""
    size, _, kind = (arg or default_size).partition(",")
    size = size or default_size
    return size, kind or (default_kinds or {}).get(size, DEFAULT_DECODER)


# MAVIS-7B (the paper's model): CLIP ViT-L/14-336 (CLIP-Math) over MAmmoTH2-7B, a Mistral-7B-v0.2
# fine-tune (vocab 32000, sliding_window null). `7b` and `tiny` mean it; `1.5b` stays Qwen2.
MAVIS_DECODERS = {"7b": "mistral", "tiny": "mistral"}


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
    llm: str = DEFAULT_DECODER,
) -> None:
    """Fills c.model with a vision tower + projector + `llm` decoder VLM of `size`."""
    decoder_cfg = decoder(llm, size)
    c.model.kind = "vlm"
    c.model.decoder = ml_collections.ConfigDict(decoder_cfg)
    c.model.vision = ml_collections.ConfigDict(vision)
    proj = {"kind": projector, "input_dim": vision["hidden_size"],
            "output_dim": decoder_cfg["hidden_size"]}  # fmt: skip
    proj["hidden_dim"] = decoder_cfg["hidden_size"]  # swiglu's inner width; the mlp's anyway
    if size != "tiny":
        proj.update(dtype="bfloat16", param_dtype="float32")
    c.model.projector = ml_collections.ConfigDict(proj)
    # Qwen2's vocabulary has Math-PUMA's image token; other LLMs get their last id as a
    # placeholder: set the tokenizer's <image> id (--config.model.image_token_id; the pipeline
    # adapter refuses a model whose id differs from the tokenizer's).
    c.model.image_token_id = (
        image_token_id(size) if llm == DEFAULT_DECODER else decoder_cfg["vocab_size"] - 1
    )
    c.model.vision_feature_layer = feature_layer
    c.model.vision_feature_select_strategy = select


def data_defaults(c: ml_collections.ConfigDict, size: str, seq_len: int = 2048) -> None:
    """Real data through the Grain pipeline; dataset and tokenizer dirs come from the command
    line (--config.data.dataset=... --config.data.tokenizer_dir=...). The objective, hence the
    pipeline's processing, is `c.task.name` alone."""
    if not isinstance(seq_len, int):
        raise TypeError(
            f"data_defaults(c, size, seq_len): got {seq_len!r}; the objective is c.task.name"
        )
    c.data.kind = "pipeline"
    c.data.dataset = ""
    c.data.split = "train"
    c.data.tokenizer_dir = ""
    c.data.seq_len = 512 if size == "tiny" else seq_len
    c.data.max_images = 1
    c.data.num_workers = 0 if size == "tiny" else 8
    c.data.bad_records = {"policy": "skip", "max_skipped_fraction": 0.01}
    if size != "tiny":
        c.loss.matmul_dtype = "bfloat16"
