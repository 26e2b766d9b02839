"""The one training loop for every stage of every recipe.

    summary = Trainer(config, workdir).run()

Order of events: distributed init -> mesh -> task -> optimizer -> abstract state + shardings ->
resume from the newest complete checkpoint (state + data iterator) or initialise (fresh, previous
stage, or imported HF weights) -> AOT-compiled step -> loop (guard, metrics, periodic async saves,
SIGTERM -> save and exit 0) -> final save.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mathjax_vl.data.bad_records import BadRecordBoundError
from mathjax_vl.data.records import RecordError
from mathjax_vl.errors import ConfigError, UserError
from mathjax_vl.train import (
    checkpointing,
    debug_hooks,
    distributed,
    guards,
    peer_watch,
    run_guard,
)
from mathjax_vl.train import data as data_lib
from mathjax_vl.train import metrics as metrics_lib
from mathjax_vl.train import optimizer as opt_lib
from mathjax_vl.train import sharding as shard_lib
from mathjax_vl.train import state as state_lib
from mathjax_vl.train import step as step_lib
from mathjax_vl.train.config_loader import save_run_config
from mathjax_vl.train.mesh import mesh_from_config
from mathjax_vl.train.tasks import build_task
from mathjax_vl.train.workdir_lock import WorkdirLock

log = logging.getLogger(__name__)


class Trainer:
    def __init__(self, config: ml_collections.ConfigDict, workdir: str | Path):
        self.config = config
        self.workdir = Path(workdir).absolute()
        distributed.maybe_initialize(config.get("distributed"))
        self.mesh = mesh_from_config(config)
        self.rules = shard_lib.rules_from_config(config.mesh.get("rules"))
        self.task = build_task(config)
        self.total_steps = int(config.train.num_steps)
        self.tx, self.schedule = opt_lib.make_optimizer(config.optim, self.total_steps)
        self.setup = state_lib.setup_state(
            self.task,
            self.tx,
            self.mesh,
            self.rules,
            tuple(config.optim.get("trainable", (".*",))),
            tuple(config.optim.get("frozen", ())),
        )
        self.global_batch = int(config.train.global_batch_size)
        shards = shard_lib.batch_shard_count(self.mesh, self.rules)
        accum = int(config.train.get("grad_accum_steps", 1))
        if self.global_batch % (shards * accum):
            raise ConfigError(
                f"train.global_batch_size {self.global_batch} must be a multiple of the batch "
                f"shards ({shards}) x grad_accum_steps ({accum})"
            )
        spec = self.task.batch_spec(self.global_batch)
        self.batch_shardings = {
            k: shard_lib.batch_sharding(self.mesh, len(v.shape), self.rules)
            for k, v in spec.items()
        }
        self.abstract_batch = {
            k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=self.batch_shardings[k])
            for k, v in spec.items()
        }
        dtype = config.optim.get("param_compute_dtype")
        self.step_fn = step_lib.make_train_step(
            self.task,
            self.tx,
            self.schedule,
            accum_steps=accum,
            param_compute_dtype=None if not dtype else jnp.dtype(dtype),
            skip_nonfinite=config.guard.get("policy", "stop") == "skip",
            base_rng=jax.random.key(int(config.seed) + 1),
            mesh=self.mesh,
            rules=self.rules,
        )
        self.jitted = step_lib.jit_train_step(
            self.step_fn, self.setup, self.batch_shardings, self.mesh, self.rules
        )

    # ------------------------------------------------------------------------ compile-time API
    def abstract_state(self) -> state_lib.TrainState:
        return jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            self.setup.abstract,
            self.setup.shardings,
        )

    def lower(self):
        """Lower the train step on abstract shapes (nothing is allocated)."""
        return self.jitted.lower(self.abstract_state(), self.abstract_batch)

    # ------------------------------------------------------------------------------ state init
    def initial_state(self) -> state_lib.TrainState:
        """The state a fresh run starts from: new parameters, or parameters filled from the
        init sources (init.sources / init.checkpoint / init.hf_dir: train.init_sources; the
        log says which source filled which subtree). A resumed run ignores it."""
        return self._initial_state()

    def _initial_state(self) -> state_lib.TrainState:
        from mathjax_vl.train import init_sources

        cfg = self.config.get("init") or ml_collections.ConfigDict()
        rng = jax.random.key(int(self.config.seed))
        fresh = state_lib.init_state(self.task, self.tx, self.setup, rng)
        sources = init_sources.sources_of(cfg)
        self.init_report = None
        if not sources:
            return fresh
        params, self.init_report = init_sources.fill(
            self.config, fresh.params(), sources, list(cfg.get("allow_missing") or [])
        )
        return state_lib.state_from_params(params, self.tx, self.setup)

    # ------------------------------------------------------------------------------------ run
    def run(self) -> dict[str, Any]:
        """Train (or resume) to the end, holding the run directory's lock throughout."""
        lock = WorkdirLock(self.workdir) if jax.process_index() == 0 else None
        if lock is not None:
            lock.acquire()
        try:
            return self._run()
        finally:
            if lock is not None:
                lock.release()

    def _run(self) -> dict[str, Any]:
        config = self.config
        pidx, pcount = jax.process_index(), jax.process_count()
        ckpt_cfg = config.checkpoint
        # Refuse before anything in the run dir is written (config.json, metrics, checkpoints).
        run_guard.check_resume_config(self.workdir, config)
        ckpt = checkpointing.Checkpointer(
            self.workdir / "checkpoints",
            interval=int(ckpt_cfg.get("interval", 0)),
            keep=int(ckpt_cfg.get("keep", 3)),
            async_save=bool(ckpt_cfg.get("async_save", True)),
        )
        state = None
        start_step = 0
        try:
            if not ckpt_cfg.get("resume", True) and ckpt.all_steps():
                raise ConfigError(
                    f"checkpoint.resume=False but {ckpt.directory} already holds checkpoints "
                    f"{ckpt.all_steps()}; a fresh run would overwrite them: use a new --workdir"
                )
            iterator = data_lib.build_iterator(config, self.task, pidx, pcount)
            if ckpt_cfg.get("resume", True):
                found = ckpt.restore_latest(
                    self.setup.abstract,
                    self.setup.shardings,
                    check=run_guard.check_state_structure(self.setup.abstract),
                )
                if found is not None:
                    start_step, restored, data_state, _ = found
                    state = state_lib.TrainState(**restored)
                    if data_state is not None:
                        iterator.set_state(data_state)
            if state is None:
                state = self._initial_state()
        except BaseException:
            ckpt.manager.close()
            raise
        if pidx == 0:  # the run dir alone then suffices to resume, evaluate or export it
            save_run_config(config, self.workdir, "written by the trainer")
        last_ckpt = str(ckpt.directory / str(start_step)) if start_step else None
        logger = metrics_lib.MetricsLogger(
            self.workdir,
            self.total_steps,
            start_step,
            enabled=pidx == 0,
            progress=bool(config.metrics.get("progress_bar", True)),
            tensorboard=bool(config.metrics.get("tensorboard", True)),
        )
        if start_step:
            logger.event({"resumed_from": start_step, "checkpoint": last_ckpt})

        compiled = self.jitted.lower(state, self.abstract_batch).compile()
        flops_per_step = self._flops_per_step(compiled)
        peak = metrics_lib.peak_flops_per_device(
            jax.devices()[0].device_kind, float(config.metrics.get("peak_flops_per_device", 0.0))
        )
        guard = guards.NonFiniteGuard(
            policy=config.guard.get("policy", "stop"),
            max_consecutive=int(config.guard.get("max_consecutive_skips", 10)),
        )
        preempted = {"flag": False}

        def on_sigterm(signum, frame):
            preempted["flag"] = True

        old_handler = signal.signal(signal.SIGTERM, on_sigterm)
        sleep_s = float(config.get("debug", {}).get("step_sleep_s", 0.0))
        step = start_step
        status = "completed"
        t_prev = time.perf_counter()
        watchdog = None
        if pcount > 1:  # a collective with a dead peer never returns: bound the wait
            timeout = float(config.distributed.get("step_timeout_s", 0) or 0)
            watchdog = peer_watch.StepWatchdog(
                timeout,
                lambda: peer_watch.peer_lost_message(
                    pidx, pcount, f"no training step finished in {timeout:g} s after step {step}",
                    last_ckpt,
                ),
            ).start()  # fmt: skip
        peer_lost = False
        totals = {"useful": 0, "computed": 0}  # tokens over this process's steps (summary)
        try:
            stop_at = int(config.train.get("run_until_step", 0)) or self.total_steps
            stop_at = min(stop_at, self.total_steps)
            while step < stop_at:
                host_batch = next(iterator)
                fp = data_lib.fingerprint(host_batch)
                tokens = self.task.count_tokens(host_batch) * pcount  # useful (non-padding)
                computed = self.task.computed_tokens(host_batch) * pcount
                totals["useful"] += tokens
                totals["computed"] += computed
                batch = data_lib.to_global(host_batch, self.batch_shardings, self.global_batch)
                with step_lib.mesh_context(self.mesh, self.rules):
                    state, metrics = compiled(state, batch)
                m = jax.device_get(metrics)
                step += 1
                now = time.perf_counter()
                dt, t_prev = now - t_prev, now
                good = guard.check(
                    step, bool(m["finite"]), float(m["loss"]), float(m["grad_norm"]), last_ckpt
                )
                record = {k: float(v) for k, v in m.items() if k != "finite" and np.ndim(v) == 0}
                record.update(
                    step_time_s=dt,
                    tokens=tokens,
                    tokens_per_s=tokens / dt if dt > 0 else 0.0,
                    computed_tokens=computed,
                    useful_fraction=tokens / computed if computed else 0.0,
                    batch_fingerprint=fp,
                )
                if flops_per_step and peak:
                    record["mfu"] = flops_per_step / dt / (peak * jax.device_count())
                if not good:
                    record["skipped"] = True
                    logger.event({"skipped_step": step, "loss": float(m["loss"])})
                logger.log(step, record)
                if sleep_s:
                    time.sleep(sleep_s)
                debug_hooks.maybe_pause(
                    config, self.workdir, step, lambda: preempted["flag"], pidx == 0, ckpt.poll
                )
                ckpt.poll()
                stop = self._agree(preempted["flag"])
                if stop or ckpt.should_save(step) or step == stop_at:
                    with watchdog.paused() if watchdog else contextlib.nullcontext():
                        ckpt.save(
                            step, state, iterator.get_state(), {"step": step, "fingerprint": fp}
                        )
                    last_ckpt = str(ckpt.directory / str(step))
                if stop:
                    status = "preempted"
                    logger.event({"preempted_at": step, "checkpoint": last_ckpt})
                    break
                if watchdog is not None:
                    watchdog.beat()
        except guards.NonFiniteError as err:
            logger.event({"stopped": str(err)})
            raise
        except Exception as err:
            if pcount == 1 or isinstance(err, (UserError, RecordError, BadRecordBoundError)):
                raise
            peer_lost = True  # no collective may run now: not even the checkpoint's close
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            message = peer_watch.peer_lost_message(
                pidx,
                pcount,
                f"a cross-process operation failed at step {step + 1} "
                f"({type(err).__name__}: {first})",
                last_ckpt,
            )
            logger.event({"peer_lost": message})
            raise peer_watch.PeerLostError(message) from err
        finally:
            if watchdog is not None:
                watchdog.stop()
            signal.signal(signal.SIGTERM, old_handler)
            if not peer_lost:
                ckpt.close()
            logger.close()
        return {
            "status": status,
            "step": step,
            "skipped_steps": guard.skipped,
            "last_checkpoint": last_ckpt,
            "useful_tokens": totals["useful"],
            "computed_tokens": totals["computed"],
            "useful_fraction": totals["useful"] / totals["computed"] if totals["computed"] else 0.0,
            "state": state,
        }

    def _agree(self, flag: bool) -> bool:
        """All processes must save at the same step: any process's SIGTERM stops everyone."""
        if jax.process_count() == 1:
            return flag
        from jax.experimental import multihost_utils

        return bool(np.max(multihost_utils.process_allgather(np.int32(flag))))

    def _flops_per_step(self, compiled) -> float:
        """Model FLOPs per step: the task's analytic count if it has one, else XLA's estimate."""
        per_example = getattr(self.task, "model_flops_per_example", None)
        if per_example is not None:
            value = per_example()
            if value:
                return float(value) * self.global_batch
        try:
            cost = compiled.cost_analysis()
            cost = cost[0] if isinstance(cost, (list, tuple)) else cost
            return float(cost.get("flops", 0.0)) * jax.device_count()
        except Exception:
            return 0.0


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    return Trainer(config, workdir).run()
