"""Trainer configs for the demo's five stages, chained through checkpoints.

    clip_math     MAVIS CLIP-Math: a CLIP dual encoder trained contrastively on diagram captions.
    puma_stage1   Math-PUMA stage 1: text-math SFT of the LLM (the VLM's vision tower is the
                  CLIP-Math tower, frozen; rows carry no images).
    puma_stage2   Math-PUMA stage 2: KL alignment of vision-rich to text-rich pairs; vision tower
                  and projector trained, LLM frozen (alpha 0.2, tau 1, lambda 0.1).
    puma_stage3   Math-PUMA stage 3: multimodal CoT instruction tuning of everything.
    image_to_code MathCoder-VL: image-to-code training on figure/program pairs.

Each stage initialises from the previous stage's last checkpoint (`init.checkpoint`), with
`init.rename` / `init.allow_missing` where the parameter trees differ (the dual encoder's vision
model becomes the VLM's vision tower; the decoder and projector start fresh in stage 1).
"""

from __future__ import annotations

import os

import ml_collections

from mathjax_vl.train.config_base import base_config


def _vision(m: ml_collections.ConfigDict) -> dict:
    return {
        "hidden_size": m.vision_hidden,
        "intermediate_size": 2 * m.vision_hidden,
        "num_layers": m.vision_layers,
        "num_heads": m.heads,
        "image_size": m.image_size,
        "patch_size": m.patch_size,
    }


def _decoder(m: ml_collections.ConfigDict, vocab_size: int) -> dict:
    return {
        "vocab_size": vocab_size,
        "hidden_size": m.text_hidden,
        "intermediate_size": 2 * m.text_hidden,
        "num_hidden_layers": m.text_layers,
        "num_attention_heads": m.heads,
        "num_key_value_heads": m.kv_heads,
        "head_dim": m.text_hidden // m.heads,
        "tie_word_embeddings": True,
        "max_position_embeddings": 4096,
        "rope_theta": 10000.0,
    }


def _common(
    demo, name: str, data_path: str, tokenizer: str, objective: str
) -> ml_collections.ConfigDict:
    t = demo.train
    c = base_config()
    c.seed = demo.seed
    c.data.kind = "pipeline"
    c.data.dataset = data_path
    c.data.split = "train"
    c.data.tokenizer_dir = tokenizer
    c.task.name = objective
    c.data.seq_len = t.seq_len
    c.data.num_workers = 0
    c.data.bad_records = {
        "policy": "skip",
        "max_skipped_fraction": t.max_skipped_fraction,
        "min_records_for_bound": 8,
    }
    c.train.num_steps = t.steps[name]
    c.train.global_batch_size = t.batch_size
    c.optim.learning_rate = t.learning_rate
    c.optim.warmup_ratio = 0.1
    c.optim.weight_decay = 0.0
    c.mesh.num_devices = demo.get("num_devices", 1)  # the tiny demo runs on one device
    c.checkpoint.interval = 0
    c.checkpoint.keep = 1
    c.checkpoint.async_save = False
    c.metrics.progress_bar = True
    c.metrics.tensorboard = True
    return c


def _vlm(c: ml_collections.ConfigDict, demo, vocab_size: int, image_token_id: int) -> None:
    m = demo.model
    c.model.kind = "vlm"
    c.model.decoder = ml_collections.ConfigDict(_decoder(m, vocab_size))
    c.model.vision = ml_collections.ConfigDict({"kind": "clip", **_vision(m)})
    c.model.projector = ml_collections.ConfigDict(
        {"kind": "mlp", "input_dim": m.vision_hidden, "output_dim": m.text_hidden}
    )
    c.model.image_token_id = image_token_id
    c.model.vision_feature_layer = -2
    c.model.vision_feature_select_strategy = "default"
    c.data.max_images = 1


def stage_configs(
    demo: ml_collections.ConfigDict,
    paths: dict[str, str],
    runs_dir: str,
    vocab_size: int,
    image_token_id: int,
    eos_token_id: int,
) -> dict[str, ml_collections.ConfigDict]:
    """The five stage configs, in run order, each pointing at its predecessor's run."""
    tok = paths["tokenizer"]
    run = {name: os.path.join(runs_dir, name) for name in demo.train.steps}
    out: dict[str, ml_collections.ConfigDict] = {}

    c = _common(demo, "clip_math", paths["contrastive"], tok, "contrastive")
    c.model.kind = "dual_encoder"
    c.model.vision = ml_collections.ConfigDict(_vision(demo.model))
    c.model.text = ml_collections.ConfigDict(
        {
            "vocab_size": vocab_size,
            "hidden_size": demo.model.vision_hidden,
            "intermediate_size": 2 * demo.model.vision_hidden,
            "num_layers": 2,
            "num_heads": demo.model.heads,
            "max_position_embeddings": demo.train.caption_len,
            "eos_token_id": eos_token_id,
        }
    )
    c.model.projection_dim = demo.model.projection_dim
    c.data.caption_len = demo.train.caption_len
    c.loss.contrastive = "clip"
    out["clip_math"] = c

    c = _common(demo, "puma_stage1", paths["text_sft"], tok, "multimodal_sft")
    _vlm(c, demo, vocab_size, image_token_id)
    c.init.checkpoint = os.path.join(run["clip_math"], "checkpoints")
    c.init.rename = [("^clip/vision_model/", "vision_tower/")]
    c.init.allow_missing = ["^language_model/", "^multi_modal_projector/"]
    c.optim.trainable = ["^language_model/"]
    out["puma_stage1"] = c

    c = _common(demo, "puma_stage2", paths["puma_kl"], tok, "puma_kl")
    _vlm(c, demo, vocab_size, image_token_id)
    c.data.response_len = demo.train.response_len
    c.loss.alpha = 0.2
    c.loss.tau = 1.0
    c.loss.lam = 0.1
    c.init.checkpoint = os.path.join(run["puma_stage1"], "checkpoints")
    c.optim.trainable = ["^vision_tower/", "^multi_modal_projector/"]
    out["puma_stage2"] = c

    c = _common(demo, "puma_stage3", paths["multimodal_sft"], tok, "multimodal_sft")
    _vlm(c, demo, vocab_size, image_token_id)
    c.init.checkpoint = os.path.join(run["puma_stage2"], "checkpoints")
    out["puma_stage3"] = c

    c = _common(demo, "image_to_code", paths["image_to_code"], tok, "image_to_code")
    _vlm(c, demo, vocab_size, image_token_id)
    c.data.seq_len = demo.train.code_seq_len
    c.init.checkpoint = os.path.join(run["puma_stage3"], "checkpoints")
    out["image_to_code"] = c
    return out


def write_config_file(config: ml_collections.ConfigDict, workdir: str, name: str) -> str:
    """Saves the stage config in its run dir (config.json + config.py); returns the file."""
    from mathjax_vl.train.config_loader import save_run_config

    return save_run_config(config, workdir, f"demo stage {name!r}, written by `mathjax-vl demo`")
