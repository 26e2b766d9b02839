"""mathjax_vl.decoding: KV-cache generation (prefill + jitted step loop) and token sampling."""

from mathjax_vl.decoding.generate import (
    GenerateOutput,
    Layout,
    decode_loop,
    decode_step,
    generate,
    generate_vlm,
    prefill,
    to_left_padding,
)
from mathjax_vl.decoding.sampling import SamplingConfig, sample_token, top_p_filter

__all__ = [
    "GenerateOutput",
    "Layout",
    "SamplingConfig",
    "decode_loop",
    "decode_step",
    "generate",
    "generate_vlm",
    "prefill",
    "sample_token",
    "to_left_padding",
    "top_p_filter",
]
