"""Export (and re-import) of VLMs with Math-PUMA's bias-free SwiGLU projector as a Llava with
remote code, the form `transformers` loads and runs.

transformers has no SwiGLU projector, so the directory carries its own modeling file
(hf/modeling_llava_swiglu.py, copied unchanged: transformers' Llava composition with the
projector replaced) and config.json's `auto_map` points the Auto classes at it:

    AutoModelForImageTextToText.from_pretrained(DIR, trust_remote_code=True)

config.json is LlavaConfig's fields plus `projector_type: "swiglu"` and
`projector_intermediate_size`, architecture `LlavaSwiGLUForConditionalGeneration`, model_type
`llava_swiglu`. Weights carry the module names (no transformers key conversion applies to remote
code): model.vision_tower.*, model.multi_modal_projector.{gate,up,down}_proj.weight,
model.language_model.*, lm_head.weight (absent when tied). hf.llava's entry reads such a
directory back (READERS), so export -> import is exact.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from mathjax_vl.hf import common, decoder
from mathjax_vl.hf import llava as hf_llava
from mathjax_vl.models.vlm import VLMConfig

ARCHITECTURE = "LlavaSwiGLUForConditionalGeneration"
MODEL_TYPE = "llava_swiglu"
MODELING_FILE = "modeling_llava_swiglu.py"
MODULE = MODELING_FILE.removesuffix(".py")
AUTO_MAP = {
    "AutoConfig": f"{MODULE}.LlavaSwiGLUConfig",
    "AutoModel": f"{MODULE}.LlavaSwiGLUModel",
    "AutoModelForImageTextToText": f"{MODULE}.{ARCHITECTURE}",
    "AutoModelForVision2Seq": f"{MODULE}.{ARCHITECTURE}",
}
# (decoder prefix, LM head key, tower prefix, projector prefix): the module names
PREFIXES = (
    "model.language_model.",
    "lm_head.weight",
    "model.vision_tower.",
    "model.multi_modal_projector.",
)


def config_to_hf(cfg: VLMConfig) -> dict[str, Any]:
    """VLMConfig -> the remote-code Llava config dict (auto_map included)."""
    hf = hf_llava.llava_dict(cfg)
    if cfg.projector.use_bias:  # ProjectorConfig keeps use_bias for mlp; swiglu has none
        hf["multimodal_projector_bias"] = False
    hf.update(
        architectures=[ARCHITECTURE],
        model_type=MODEL_TYPE,
        projector_type=cfg.projector.kind,
        projector_intermediate_size=cfg.projector.inner_dim,
        auto_map=dict(AUTO_MAP),
    )
    return hf


def save(
    params: Any,
    cfg: VLMConfig,
    path: str,
    tokenizer_dir: str | None = None,
    max_shard_bytes: int | None = None,
    dtype: str | None = None,
) -> list[str]:
    """Writes DIR loadable by AutoModelForImageTextToText.from_pretrained(DIR,
    trust_remote_code=True); returns the files written."""
    state = hf_llava.state_from_params(params, cfg, PREFIXES)
    os.makedirs(path, exist_ok=True)
    shutil.copyfile(os.path.join(os.path.dirname(__file__), MODELING_FILE),
                    os.path.join(path, MODELING_FILE))  # fmt: skip
    files = hf_llava.write_dir(
        path, config_to_hf(cfg), state, cfg, tokenizer_dir, max_shard_bytes, dtype
    )
    return [*files, MODELING_FILE]


def load(path: str, **knobs: Any) -> tuple[VLMConfig, dict]:
    """A directory `save` wrote -> (VLMConfig, numpy params)."""
    hf_cfg = common.read_config(path)
    common.check_architecture(hf_cfg, (ARCHITECTURE,), path)
    cfg = hf_llava.config_from_hf(hf_cfg, path, **knobs)
    reader = common.CheckpointReader(path)
    params = hf_llava.import_vlm(reader, cfg, path, "multi_modal_projector", (PREFIXES[1],))
    decoder.check_all_used(reader, f"{ARCHITECTURE} (SwiGLU projector)")
    return cfg, params
