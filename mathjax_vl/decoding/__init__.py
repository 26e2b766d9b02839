"""mathjax_vl.decoding: KV-cache generation (prefill + jitted step loop) and token sampling."""

from mathjax_vl.decoding.generate import (
    GenerateOutput,
    Layout,
    cache_shape,
    compiled_executables,
    decode_fn,
    decode_loop,
    decode_step,
    embed_fn,
    generate,
    generate_vlm,
    prefill,
    prefill_fn,
    to_left_padding,
)
from mathjax_vl.decoding.sampling import SamplingConfig, sample_token, top_p_filter

__all__ = [
    "GenerateOutput",
    "Layout",
    "SamplingConfig",
    "cache_shape",
    "compiled_executables",
    "decode_fn",
    "decode_loop",
    "decode_step",
    "embed_fn",
    "generate",
    "generate_vlm",
    "prefill",
    "prefill_fn",
    "sample_token",
    "to_left_padding",
    "top_p_filter",
]
