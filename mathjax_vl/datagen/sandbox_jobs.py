"""Trusted jobs (`FigureExecutor.map_calls`) inside a sandbox: one warm job worker per sandbox.

Why a persistent worker: engine jobs (engine.build_item) are our code, and they are fast only
warm: sympy's caches, the families' compiled templates and the allocator's pages persist from one
item to the next (a fresh fork per item made an accepted pair ~3x dearer in CPU). What must not
persist is a figure PROGRAM's influence, so every program a job renders still runs in its own
fresh grandchild with every restriction (sandbox_child.fork_program), and only its validated
result comes back. The worker is replaced after a job fails in a way that may leave it unsound
(timeout, MemoryError, death) and every `max_jobs_per_worker` jobs.

The zygote talks to the worker over two pipes: pickled tasks in (both sides are trusted code),
frames out: [8-byte length][8-byte CPU seconds][wire message]. The zygote forwards the wire bytes
to the parent, which decodes them as data (sandbox_child.classify_call).
"""

from __future__ import annotations

import importlib
import multiprocessing.connection
import os
import resource
import select
import struct
import time
import traceback
from typing import Any

from mathjax_vl.datagen import sandbox_child as C
from mathjax_vl.datagen import sandbox_guard as G
from mathjax_vl.datagen import wire

_FRAME = struct.Struct(">Qd")


def _cpu_with_children() -> float:
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _worker_main(task_fd: int, result_fd: int, env: dict[str, Any]) -> None:
    """The job worker: run `target(payload, run_program)` per task until EOF; never returns."""
    C._only_fds((2, task_fd, result_fd))
    G.die_with_parent()
    G.set_limits(env["config"], None)
    config = env["config"]
    tasks = multiprocessing.connection.Connection(task_fd, writable=False)

    def run_program(source: str) -> dict[str, Any]:
        return C.classify_program(C.fork_program(source, env), config)

    while True:
        try:
            target, payload = tasks.recv()
        except EOFError:
            break
        cpu_start = _cpu_with_children()
        value, error_kind, error = None, None, None
        module_name, function_name = target.split(":")
        try:
            function = getattr(importlib.import_module(module_name), function_name)
            value = function(payload, run_program)
        except MemoryError as exc:
            error_kind, error = "memory", f"MemoryError: {exc}"
        except Exception as exc:
            error_kind = "exception"
            error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
        try:
            data = wire.encode({"value": value, "error_kind": error_kind, "error": error})
        except TypeError as exc:
            data = wire.encode({"value": None, "error_kind": "exception", "error": str(exc)})
        C._write_all(result_fd, _FRAME.pack(len(data), _cpu_with_children() - cpu_start) + data)
        if error_kind == "memory":
            break  # a MemoryError may have left half-built structures: start afresh
    os._exit(0)


class JobWorker:
    """Zygote side: start the worker on first use, send a task, read its one frame."""

    def __init__(self, env: dict[str, Any]):
        self.env = env
        self.pid: int | None = None
        self.done = 0

    def _start(self) -> None:
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        pid = C._fork()
        if pid == 0:
            try:
                os.close(task_w)
                os.close(result_r)
                _worker_main(task_r, result_w, self.env)
            finally:
                os._exit(70)
        os.close(task_r)
        os.close(result_w)
        self.pid, self.done = pid, 0
        self.tasks = multiprocessing.connection.Connection(task_w, readable=False)
        self.results = result_r
        self.pidfd = os.pidfd_open(pid)

    def stop(self) -> None:
        """Kill and reap the worker (and, through PDEATHSIG, anything it forked)."""
        if self.pid is None:
            return
        C._kill(self.pid)
        os.waitpid(self.pid, 0)
        self.tasks.close()
        os.close(self.results)
        os.close(self.pidfd)
        self.pid = None

    def call(self, target: str, payload: Any) -> dict[str, Any]:
        """The facts of one job, as sandbox_child._collect reports a program's."""
        config = self.env["config"]
        if self.pid is None:
            self._start()
        start = time.perf_counter()
        deadline = start + config.call_timeout_s
        facts = {"code": 0, "timed_out": False, "overflow": False, "stray": 0, "cpu": 0.0}
        self.tasks.send((target, payload))
        header, raw = self._read(_FRAME.size, deadline)
        if header is not None:
            size, facts["cpu"] = _FRAME.unpack(header)
            if size > config.max_call_result_bytes:
                facts["overflow"] = True
            else:
                raw = self._read(size, deadline)[0]
        if header is None or raw is None or facts["overflow"]:
            facts["timed_out"] = time.perf_counter() >= deadline
            alive = select.select([self.pidfd], [], [], 0)[0] == []
            self.stop()
            if not facts["timed_out"] and not alive:
                facts["code"] = 70  # died before answering
            raw = b""
        else:
            self.done += 1
            if self.done >= config.max_jobs_per_worker:
                self.stop()
        facts.update(seconds=time.perf_counter() - start, raw=raw)
        return facts

    def _read(self, size: int, deadline: float) -> tuple[bytes | None, bytes | None]:
        chunks, got = [], 0
        while got < size:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return None, None
            readable = select.select([self.results, self.pidfd], [], [], remaining)[0]
            if self.results in readable:
                chunk = os.read(self.results, min(size - got, 1 << 20))
                if not chunk:
                    return None, None
                chunks.append(chunk)
                got += len(chunk)
            elif readable:  # the worker exited with the frame incomplete
                return None, None
        data = b"".join(chunks)
        return data, data
