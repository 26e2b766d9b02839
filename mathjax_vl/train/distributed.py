"""Multi-host start-up: `jax.distributed.initialize` from the config or the environment.

On Cloud TPU and under SLURM jax discovers the coordinator itself (call with no arguments); a
local multi-process run passes coordinator/num_processes/process_id through the config or the
environment variables MATHJAX_VL_COORDINATOR, MATHJAX_VL_NUM_PROCESSES, MATHJAX_VL_PROCESS_ID.
"""

from __future__ import annotations

import logging
import os

import ml_collections

log = logging.getLogger(__name__)

_initialized = False


def maybe_initialize(cfg: ml_collections.ConfigDict | None) -> bool:
    """Initialise jax.distributed if the config or environment asks for it; returns whether it did.

    cfg fields (config.distributed): enabled ('auto' | True | False), coordinator_address,
    num_processes, process_id, local_device_ids, heartbeat_timeout_s. 'auto' initialises when a
    coordinator is given or under SLURM with more than one task or on a multi-host TPU
    (TPU_WORKER_HOSTNAMES).
    """
    global _initialized
    if _initialized:
        return True
    import jax

    cfg = cfg or ml_collections.ConfigDict()
    enabled = cfg.get("enabled", "auto")
    coordinator = cfg.get("coordinator_address") or os.environ.get("MATHJAX_VL_COORDINATOR")
    num = cfg.get("num_processes") or os.environ.get("MATHJAX_VL_NUM_PROCESSES")
    pid = cfg.get("process_id")
    if pid is not None and int(pid) < 0:
        pid = None
    if pid is None and os.environ.get("MATHJAX_VL_PROCESS_ID") is not None:
        pid = os.environ["MATHJAX_VL_PROCESS_ID"]
    if enabled == "auto":
        multi_slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
        multi_tpu = "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
        enabled = bool(coordinator) or multi_slurm or multi_tpu
    if not enabled:
        return False
    kwargs = {}
    if coordinator:
        kwargs["coordinator_address"] = str(coordinator)
    if num is not None:
        kwargs["num_processes"] = int(num)
    if pid is not None:
        kwargs["process_id"] = int(pid)
    if cfg.get("local_device_ids") is not None:
        kwargs["local_device_ids"] = list(cfg.local_device_ids)
    if cfg.get("heartbeat_timeout_s"):
        kwargs["heartbeat_timeout_seconds"] = int(cfg.heartbeat_timeout_s)
    log.info("jax.distributed.initialize(%s)", kwargs)
    jax.distributed.initialize(**kwargs)
    _initialized = True
    return True
