"""Training observability: JSON lines, TensorBoard event files (no TensorFlow), a progress bar.

Only process 0 writes. Every step logs loss parts, grad norm, learning rate, tokens/s (useful,
i.e. non-padding, tokens), computed tokens and the useful fraction (useful / computed), step time,
an MFU estimate and the batch fingerprint (so two runs' batch sequences can be compared).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

# Peak dense bf16 FLOP/s per chip, for the MFU estimate when the config does not give one.
PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
    "NVIDIA A100": 312e12,
}


def peak_flops_per_device(device_kind: str, override: float = 0.0) -> float:
    """Configured peak, else the table's entry for this device kind, else 0 (MFU not reported)."""
    if override:
        return float(override)
    for name, flops in PEAK_FLOPS.items():
        if device_kind.startswith(name):
            return flops
    return 0.0


class TensorBoardWriter:
    """Scalars into an events file via tensorboard's pure-python EventFileWriter."""

    def __init__(self, logdir: str | os.PathLike):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        Path(logdir).mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(logdir))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()
            ]
        )
        self._writer.add_event(
            event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
        )

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class MetricsLogger:
    """Fans one record per step out to metrics.jsonl, TensorBoard and a tqdm bar."""

    def __init__(
        self,
        workdir: str | os.PathLike,
        total_steps: int,
        start_step: int,
        enabled: bool = True,
        progress: bool = True,
        tensorboard: bool = True,
    ):
        self.enabled = enabled
        self._bar = None
        self._tb = None
        self._jsonl = None
        if not enabled:
            return
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(workdir / "metrics.jsonl", "a", buffering=1)
        if tensorboard:
            self._tb = TensorBoardWriter(workdir / "tensorboard")
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total_steps,
                initial=start_step,
                unit="step",
                dynamic_ncols=True,
                smoothing=0.1,
            )

    def log(self, step: int, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), "time": time.time(), **record}
        self._jsonl.write(json.dumps(row) + "\n")
        if self._tb is not None:
            self._tb.scalars(
                step,
                {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"},
            )
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            post = {"loss": f"{record.get('loss', float('nan')):.4f}"}
            if "tokens_per_s" in record:  # useful (non-padding) tokens per second
                post["tok/s"] = f"{record['tokens_per_s']:.0f}"
            if record.get("computed_tokens"):
                post["useful"] = f"{record['useful_fraction']:.2f}"
            self._bar.set_postfix(post, refresh=False)

    def event(self, record: dict[str, Any]) -> None:
        """A non-step record (resume, skipped step, preemption, stop)."""
        if self.enabled:
            self._jsonl.write(json.dumps({"event": True, "time": time.time(), **record}) + "\n")

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        self._jsonl.close()
