"""Multi-process runs end with a clear error, not a hang, when a peer process dies.

Two ways a dead peer shows up on the survivors:
- a collective fails (gloo: "Connection reset by peer", a failed coordination barrier): the
  trainer turns the exception into `PeerLostError` naming the step and the checkpoint to resume
  from, and the CLI exits with EXIT_PEER_LOST without running jax.distributed's shutdown barrier
  (which would wait for the dead peer, then abort);
- a collective never returns (a hung peer, a lost message): `StepWatchdog` prints the same kind
  of message and exits the process when no step finished within `distributed.step_timeout_s`.

Either way the in-flight checkpoint has no manifest, so the restarted run resumes from the last
complete one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator

EXIT_PEER_LOST = 4


class PeerLostError(RuntimeError):
    """A cross-process operation failed: another process of the run has most likely died."""


def peer_lost_message(pidx: int, pcount: int, what: str, last_ckpt: str | None) -> str:
    resume = (
        f"the last complete checkpoint is {last_ckpt}" if last_ckpt else "no checkpoint was saved"
    )
    return (
        f"process {pidx} of {pcount}: {what}; another process of the run has most likely died. "
        f"Restart all {pcount} processes with the same command to resume ({resume})"
    )


def exit_now(message: str, code: int = EXIT_PEER_LOST) -> None:
    """Print `error: message` and leave at once: no atexit hooks, so no jax.distributed shutdown
    barrier that would wait on the dead peer. The kernel drops the workdir lock."""
    try:
        sys.stdout.flush()
        print(f"error: {message}", file=sys.stderr, flush=True)
    finally:
        os._exit(code)


class StepWatchdog:
    """Background thread: exit_now(...) when `beat()` was not called for `timeout_s` seconds.

    Armed by the first beat: before it, processes still compiling at different speeds wait in
    the first collective for each other (a peer dead by then is caught by jax's heartbeat)."""

    def __init__(self, timeout_s: float, describe):
        self.timeout_s = float(timeout_s)
        self._describe = describe  # () -> message, evaluated when it fires
        self._last: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="step_watchdog", daemon=True)

    def start(self) -> StepWatchdog:
        if self.timeout_s > 0:
            self._thread.start()
        return self

    def beat(self) -> None:
        self._last = time.monotonic()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No deadline inside (a checkpoint save may legitimately take long; its barriers go
        through the coordination service, whose heartbeat catches a dead peer)."""
        last, self._last = self._last, None
        try:
            yield
        finally:
            self._last = time.monotonic() if last is not None else None

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.timeout_s / 4)):
            if self._last is not None and time.monotonic() - self._last > self.timeout_s:
                exit_now(self._describe())
