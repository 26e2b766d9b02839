"""Declarative HF config mapping for configs whose fields map one to one (the ViT towers):
a table of (our field, HF field, HF default) drives both directions."""

from __future__ import annotations

from typing import Any

Field = tuple[str, str, Any]  # (our name, HF name, default when the HF dict lacks it)


def from_hf(table: list[Field], hf: dict[str, Any]) -> dict[str, Any]:
    """Our field values from an HF config dict (HF defaults where a field is absent)."""
    return {ours: hf.get(theirs, default) for ours, theirs, default in table}


def to_hf(table: list[Field], cfg: Any, model_type: str) -> dict[str, Any]:
    """The HF config dict of `cfg` (plus model_type; dropout off, as we train without it)."""
    out: dict[str, Any] = {"model_type": model_type}
    out.update({theirs: getattr(cfg, ours) for ours, theirs, _ in table})
    out["attention_dropout"] = 0.0
    return out
