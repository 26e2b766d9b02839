"""The base training config: every knob the trainer reads, with defaults.

Config files under configs/ start from `base_config()` and override what their stage needs, so a
recipe config is data only. Load one with `mathjax_vl.train.config_loader.load_config`.
"""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    # task.name: the objective (mathjax_vl.train.tasks), the one name its datagen recipe, input
    # pipeline and task share; older names are aliases ("sft": text_sft or multimodal_sft by
    # the model's role).
    c.task = ml_collections.ConfigDict({"name": "sft", "factory": ""})

    # Model: `kind` picks the builder (qwen2 | vlm | dual_encoder); the sub-dicts are the models'
    # own config dataclasses' fields (mathjax_vl.models).
    c.model = ml_collections.ConfigDict({"kind": "qwen2"})
    c.model.decoder = ml_collections.ConfigDict()

    c.loss = ml_collections.ConfigDict(
        {
            "impl": "fused",  # fused (never builds [tokens, vocab]) | naive (full logits)
            "z_loss": 0.0,
            "vocab_block": 0,  # 0: whole vocabulary per token block (no recompute; small vocab)
            # Token rows per LM-head chunk. With skip_inactive only the chunks holding loss
            # positions run, so a smaller block skips more of the masked prompt/image rows.
            "token_block": 256,
            "skip_inactive": True,
        }
    )

    c.data = ml_collections.ConfigDict(
        {
            "kind": "synthetic",  # synthetic | pipeline (mathjax_vl.data.pipelines)
            # older configs named the pipeline's objective here; if set it must name the same
            # objective as task.name (the pipeline always follows task.name)
            "objective": "",
            "seq_len": 512,
            "num_examples": 4096,
            "seed": 0,
            "nan_example_index": -1,  # fault injection: that synthetic example's floats are NaN
            # multimodal rows: "bucketed" (one example per row, padded to seq_len) or "packing"
            # (several whole examples per row with segment ids; max_images = image slots per row)
            "layout": "bucketed",
            "packing_window": 64,  # examples packed together (first-fit decreasing)
        }
    )

    c.train = ml_collections.ConfigDict(
        {
            "num_steps": 100,  # the schedule's length
            "global_batch_size": 8,
            "grad_accum_steps": 1,
            "run_until_step": 0,  # stop (and save) early at this step; 0 = num_steps
        }
    )

    c.optim = ml_collections.ConfigDict(
        {
            "learning_rate": 3e-5,
            "warmup_ratio": 0.02,  # Math-PUMA: 2% warmup, cosine decay
            "schedule": "cosine",
            "end_lr_ratio": 0.0,
            "b1": 0.9,
            "b2": 0.999,
            "eps": 1e-8,
            "weight_decay": 0.1,
            "decay_exclude": [],
            "grad_clip_norm": 1.0,
            "trainable": [".*"],  # regexes over 'a/b/kernel' parameter paths
            "frozen": [],
            "param_compute_dtype": "",  # e.g. bfloat16: cast master weights once per step
        }
    )

    c.mesh = ml_collections.ConfigDict(
        {
            "shape": {"data": 1, "fsdp": -1, "tensor": 1},
            "rules": [],  # [] = sharding.DEFAULT_RULES
            "num_devices": 0,  # 0 = all devices; N = the first N (tests, single-device baselines)
        }
    )

    c.checkpoint = ml_collections.ConfigDict(
        {"interval": 1000, "keep": 3, "async_save": True, "resume": True}
    )
    # Start a stage from sources (train/init_sources.py): `sources` is a list of
    # {path, step, take, rename, into, name} dicts (training runs, HF or our checkpoint dirs,
    # mixed); `checkpoint` (+ step, rename) and `hf_dir` are single-source shorthands. Every
    # parameter no source fills must match an `allow_missing` regex (it keeps its fresh init).
    c.init = ml_collections.ConfigDict(
        {
            "sources": [],
            "checkpoint": "",
            "step": None,
            "rename": [],
            "allow_missing": [],
            "hf_dir": "",
        }
    )
    c.init.step = ml_collections.FieldReference(None, field_type=int)

    c.guard = ml_collections.ConfigDict({"policy": "stop", "max_consecutive_skips": 10})

    c.metrics = ml_collections.ConfigDict(
        {"progress_bar": True, "tensorboard": True, "peak_flops_per_device": 0.0}
    )

    c.distributed = ml_collections.ConfigDict(
        {
            "enabled": "auto",
            "coordinator_address": "",
            "num_processes": 0,
            "process_id": -1,
            # A dead peer is declared after this long without heartbeats (jax's default is 100).
            "heartbeat_timeout_s": 60,
            # Multi-process only: exit (status 4) when no step finishes for this long, since a
            # collective with a dead or hung peer never returns. 0 = never.
            "step_timeout_s": 300.0,
        }
    )
    # step_sleep_s: a slower loop (benchmarks); pause_after_step: block after that step until
    # SIGTERM, writing a marker (the resume tests kill or preempt at an exact step).
    c.debug = ml_collections.ConfigDict({"step_sleep_s": 0.0, "pause_after_step": 0})
    return c


def tiny_decoder() -> dict:
    """A 2-layer Qwen2 for tests and demos (GQA 4/2 heads, vocab 256)."""
    return {
        "vocab_size": 256,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "tie_word_embeddings": True,
        "max_position_embeddings": 256,
        "rope_theta": 10000.0,
    }


def tiny_vlm(c: ml_collections.ConfigDict) -> None:
    """Tiny SigLIP (16 px, 4 px patches -> 15 image tokens after dropping the first) + MLP
    projector + tiny Qwen2; the image token is the last vocabulary id."""
    c.model.kind = "vlm"
    c.model.decoder = ml_collections.ConfigDict(tiny_decoder())
    c.model.vision = ml_collections.ConfigDict(
        {
            "kind": "siglip",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_layers": 2,
            "num_heads": 4,
            "image_size": 16,
            "patch_size": 4,
        }
    )
    c.model.projector = ml_collections.ConfigDict(
        {"kind": "mlp", "input_dim": 32, "output_dim": 32}
    )
    c.model.image_token_id = 255
    c.model.vision_feature_layer = -2
    c.model.vision_feature_select_strategy = "default"
