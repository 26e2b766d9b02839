"""Run untrusted figure programs in an OS sandbox and get back their PNG bytes, as data.

Programs are ours (the families' figure programs), third parties' or a model's (MathCoder-VL's
model-in-the-loop step, `codify`), so every program is treated as hostile. What is guaranteed:

- **Isolation** (isolation.py). Each worker is one sandbox: an interpreter in new user, PID,
  network, mount, IPC and UTS namespaces (bubblewrap when installed, util-linux unshare
  otherwise), which sees read-only only the interpreter, its packages, the shared libraries,
  the fonts and `mathjax_vl/`; a private size-limited tmpfs; no network; no environment
  variables of the parent; no capabilities. If the namespaces cannot be created, starting
  fails with a message saying so. Running without them needs `unsafe_no_isolation=True`
  (CLI `--unsafe-no-isolation`), which prints a warning.
- **One process per program** (sandbox_child.py). Inside, a zygote that imported matplotlib
  once forks a fresh child for every program, so a program that tampers with its interpreter
  dies with it and the next one starts clean. After each program every process of the sandbox
  but the zygote is killed (it is PID 1 of the namespace), so nothing a program starts
  outlives it.
- **Limits and refusals** (sandbox_guard.py), in that child: rlimits on CPU, address space,
  file size, open files and processes; a SIGPROF CPU timer (load-independent, so a busy machine
  does not change the engine's output) and a wall-clock limit enforced from outside the
  child; a seccomp filter that kills the child on fork/exec/socket/ptrace/mount; an audit hook,
  never disarmed, that ends the child on a write outside its working dir, a read outside the
  files above, `dir_fd` tricks, subprocesses, sockets, ctypes, gc/frame introspection. A
  10 GB allocation raises MemoryError inside the program.
- **Data only back** (wire.py). The child's result is PNG bytes + JSON; the parent decodes it
  without unpickling and validates every field (a PNG, within size, a known outcome); a
  malformed or oversized message is reported as `forbidden`, and no code the child chose ever
  runs in the parent.

Outcomes (`FigureResult.error_kind`): None (ok) or one of ERROR_KINDS. A program's outcome is
`forbidden` when it attempted something refused, `timeout`/`memory` at the limits. The audit
hook is a detector, not the boundary: a program that slipped past it would still be confined
by the namespaces, seccomp and rlimits. Not covered: kernel exploits (the namespaces share the
host kernel), and CPU/memory denial of service beyond the per-program limits.

Besides the image, the child reports which drawn text labels fall outside the canvas (measured on
the actual renderer during `savefig`, sandbox_mpl.py), for the quality gate "no label clipped off
the canvas".
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import multiprocessing.connection
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

from mathjax_vl.datagen import isolation, sandbox_child, wire
from mathjax_vl.datagen.isolation import IsolationError

PNG_MAGIC = sandbox_child.PNG_MAGIC

# Failure kinds a FigureResult can carry (quality/engine reports count by these strings).
ERROR_KINDS = (
    "timeout",  # ran past the CPU or wall-clock limit; killed
    "memory",  # MemoryError (the address-space limit was hit)
    "forbidden",  # a refused action (write/read outside, subprocess, socket, tampering, ...)
    "syntax",  # the source does not compile
    "exception",  # any other exception raised by the program
    "crash",  # the program's process died (segfault, abort, os._exit, ...)
    "no_image",  # ran fine but saved nothing at sys.argv[1]
    "not_png",  # saved a file that is not a PNG
    "image_too_large",  # PNG bigger than max_image_bytes
)
__all__ = ["ERROR_KINDS", "FigureExecutor", "FigureResult", "IsolationError", "SandboxConfig"]


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
    """Limits, isolation and pool size for the figure executor. Every knob is here."""

    workers: int = 1  # sandboxes, each running one program at a time
    # "auto" (bwrap if installed, else unshare), "bwrap" or "unshare"
    isolation: str = "auto"
    # Run the zygote as a plain process, without namespaces (prints a warning). Only for
    # machines that cannot create user namespaces and programs you trust.
    unsafe_no_isolation: bool = False
    # CPU seconds per program, enforced in the worker (SIGPROF): independent of machine load, so
    # a busy machine cannot turn a good figure into a "timeout" and change the engine's output.
    timeout_s: float = 10.0
    memory_limit_bytes: int = 2 * 1024**3  # RLIMIT_AS of each program's process
    max_image_bytes: int = 16 * 1024**2  # RLIMIT_FSIZE and the largest PNG accepted
    max_processes: int = 64  # RLIMIT_NPROC (tasks incl. threads; fork itself is refused)
    max_open_files: int = 256  # RLIMIT_NOFILE of a program
    tmpfs_bytes: int = 256 * 1024**2  # the sandbox's private /tmp (working dirs), in RAM
    max_call_result_bytes: int = 256 * 1024**2  # largest result of one map_calls job
    max_jobs_per_worker: int = 2000  # recycle the warm job worker to bound cache growth
    extra_read_paths: tuple[str, ...] = ()  # more host paths programs may read (read-only)
    startup_timeout_s: float = 60.0  # a sandbox must import matplotlib within this
    # Wall clock per program, enforced outside the program's process (SIGKILL): the backstop
    # for what the CPU timer cannot see (sleeping, blocking). None: 3 x timeout_s + 20 s,
    # generous so that only a stuck program, not a loaded machine, reaches it.
    wall_timeout_s: float | None = None
    # Wall clock per trusted job (map_calls); a backstop only (its figures have CPU limits), so
    # generous: a job killed on a loaded machine would change the engine's output.
    call_timeout_s: float = 600.0
    autosave_open_figure: bool = True  # no file at sys.argv[1] but a figure open: save it
    clip_tolerance_px: float = 0.5  # text extents may exceed the canvas by this much
    output_tail_chars: int = 2000  # how much of a failing program's stdout/stderr is kept
    # Reuse plain-text measurements across the figures of one process (identical numbers, one
    # FreeType shaping saved per label; see sandbox_mpl._share_text_metrics_across_figures).
    share_text_metrics: bool = True
    # Modules the zygote imports before it forks any program (the "warm" part).
    preload: tuple[str, ...] = ("numpy", "matplotlib", "matplotlib.pyplot", "matplotlib.patches")

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"SandboxConfig.workers must be >= 1, got {self.workers}")
        if self.timeout_s <= 0:
            raise ValueError(f"SandboxConfig.timeout_s must be > 0, got {self.timeout_s}")
        if self.isolation not in ("auto", "bwrap", "unshare"):
            raise ValueError(
                f"SandboxConfig.isolation must be auto, bwrap or unshare, got {self.isolation!r}"
            )

    @property
    def wall_limit_s(self) -> float:
        if self.wall_timeout_s is not None:
            return self.wall_timeout_s
        return 3 * self.timeout_s + 20


@dataclasses.dataclass(frozen=True)
class FigureResult:
    """Outcome of one program: PNG bytes, or the failure kind and message."""

    index: int
    png: bytes | None
    error_kind: str | None = None
    error: str | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU of the program's process + the zygote's share (load-free)
    clipped_labels: tuple[str, ...] = ()  # drawn texts whose extent leaves the canvas
    violations: tuple[str, ...] = ()  # the refused action that ended the program
    output: str = ""  # tail of captured stdout/stderr

    @property
    def ok(self) -> bool:
        return self.error_kind is None and self.png is not None


@dataclasses.dataclass(frozen=True)
class CallResult:
    """Outcome of a trusted job run in a worker (`FigureExecutor.map_calls`)."""

    index: int
    value: Any
    error_kind: str | None = None
    error: str | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0


# --------------------------------------------------------------------------------------------
# Parent side.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Sandbox:
    """One sandbox: its launcher process (bwrap/unshare/python) and the control connection."""

    process: subprocess.Popen
    control: multiprocessing.connection.Connection
    log_path: str
    scratch: str
    task: tuple[Any, ...] | None = None  # (kind, index, ...) while busy
    started: float = 0.0

    def kill(self) -> None:
        """SIGKILL the launcher's process group: the zygote and everything inside die."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.control.close()


def _mpl_font_cache() -> dict[str, bytes]:
    """The parent's matplotlib font list, so a sandbox need not rebuild it (seconds, at start)."""
    home = os.path.expanduser("~")
    cache = os.environ.get("MPLCONFIGDIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"), "matplotlib"
    )
    found = {}
    with contextlib.suppress(OSError):
        for name in os.listdir(cache):
            if name.startswith("fontlist-") and name.endswith(".json"):
                with open(os.path.join(cache, name), "rb") as f:
                    found[name] = f.read()
    return found


class FigureExecutor:
    """The sandbox pool. Use as a context manager; `run(programs)` returns results in order.

    Results never raise for a bad program: failures come back as `FigureResult.error_kind`.
    Each sandbox's zygote is started with `subprocess` (not forked from this process, which may
    hold JAX threads; not multiprocessing's spawn, which re-imports the caller's `__main__`).
    """

    def __init__(self, config: SandboxConfig = SandboxConfig()):
        self.config = config
        self._sandboxes: list[_Sandbox] = []
        self.restarts = 0  # sandboxes replaced after a stuck or dead zygote
        self.mode = "none" if config.unsafe_no_isolation else None  # resolved at start

    def __enter__(self) -> FigureExecutor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if self.config.unsafe_no_isolation and not self._sandboxes:
            print(isolation.UNSAFE_WARNING, file=sys.stderr)
        launching = []
        while len(self._sandboxes) + len(launching) < self.config.workers:
            launching.append(self._launch())
        for sandbox in launching:  # started together, waited for one by one
            self._await_ready(sandbox)
            self._sandboxes.append(sandbox)

    def _launch(self) -> _Sandbox:
        scratch = tempfile.mkdtemp(prefix="mathjax_vl_sandbox_")
        parent_end, child_end = socket.socketpair()
        try:
            mode = "none" if self.config.unsafe_no_isolation else self.config.isolation
            spec = isolation.launch(mode, self.config, child_end.fileno(), scratch)
        except BaseException:
            parent_end.close()
            child_end.close()
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        self.mode = spec.mode
        log_fd, log_path = tempfile.mkstemp(prefix="zygote_", suffix=".log", dir=scratch)
        process = subprocess.Popen(
            spec.argv,
            pass_fds=(child_end.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            env=spec.env,
            cwd=scratch,
            start_new_session=True,  # its own process group: killpg reaches everything
        )
        child_end.close()
        os.close(log_fd)
        control = multiprocessing.connection.Connection(parent_end.detach())
        control.send(
            {
                "config": self.config,
                "work_root": spec.work_root,
                "read_roots": spec.read_roots,
                "mpl_cache": _mpl_font_cache(),
            }
        )
        return _Sandbox(process, control, log_path, scratch, started=time.monotonic())

    def _await_ready(self, sandbox: _Sandbox) -> None:
        left = self.config.startup_timeout_s - (time.monotonic() - sandbox.started)
        try:
            if not sandbox.control.poll(max(left, 0.0)):
                raise EOFError("no answer")
            message = wire.decode(sandbox.control.recv_bytes(1 << 16), 1 << 16)
            if not (isinstance(message, dict) and "ready" in message):
                raise EOFError(f"unexpected first message {message!r:.200}")
        except (EOFError, OSError, wire.WireError) as exc:
            sandbox.kill()
            with open(sandbox.log_path, errors="replace") as f:
                log = f.read()[-self.config.output_tail_chars :]
            shutil.rmtree(sandbox.scratch, ignore_errors=True)
            self.close()
            raise RuntimeError(
                f"figure sandbox ({self.mode}) did not start within "
                f"{self.config.startup_timeout_s} s ({exc}); check that matplotlib imports "
                f"and that memory_limit_bytes={self.config.memory_limit_bytes} leaves room for "
                f"it. Its output:\n{log}"
            ) from None

    def _replace(self, sandbox: _Sandbox) -> None:
        self._discard(sandbox)
        fresh = self._launch()
        self._await_ready(fresh)
        self._sandboxes[self._sandboxes.index(sandbox)] = fresh
        self.restarts += 1

    def _discard(self, sandbox: _Sandbox) -> None:
        sandbox.kill()
        shutil.rmtree(sandbox.scratch, ignore_errors=True)

    def close(self) -> None:
        for sandbox in self._sandboxes:
            with contextlib.suppress(OSError):
                if sandbox.task is None:
                    sandbox.control.send(None)
        deadline = time.monotonic() + 2
        for sandbox in self._sandboxes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                sandbox.process.wait(timeout=max(deadline - time.monotonic(), 0.01))
            self._discard(sandbox)
        self._sandboxes = []

    def launcher_pids(self) -> list[int]:
        """Host pids of the sandboxes' launchers (bwrap/unshare/python): tests walk their trees."""
        return [s.process.pid for s in self._sandboxes]

    def run(self, programs: Sequence[str]) -> list[FigureResult]:
        """Run all programs; the i-th result belongs to the i-th program."""
        results: list[FigureResult | None] = [None] * len(programs)
        for result in self.imap_unordered(programs):
            results[result.index] = result
        return results  # type: ignore[return-value]

    def imap_unordered(self, programs: Sequence[str]) -> Iterator[FigureResult]:
        """Yield each program's result as it completes (for progress bars)."""
        for index, fields in self._imap([("program", source) for source in programs]):
            yield FigureResult(index=index, **fields)

    def map_calls(self, target: str, payloads: Sequence[Any]) -> Iterator[CallResult]:
        """Run trusted `target(payload, run_program)` ("module:function") in the sandboxes.

        Jobs run one after another in the sandbox's warm job worker (sandbox_jobs: trusted
        code, caches kept). `run_program(source) -> dict` renders one figure program in a
        fresh process with every restriction of `run`, so a job can build a problem, render
        its figures and check them without shipping programs and images back and forth. The
        job's return value comes back as data (wire.py: JSON, bytes, records), never a pickle.
        Results are yielded as they complete (use `.index`).
        """
        for index, fields in self._imap([("call", target, p) for p in payloads]):
            yield CallResult(index=index, **fields)

    def _imap(self, tasks: Sequence[tuple[Any, ...]]) -> Iterator[tuple[int, dict[str, Any]]]:
        if not self._sandboxes:
            self.start()
        pending = collections.deque((kind, i, *rest) for i, (kind, *rest) in enumerate(tasks))
        outstanding = len(tasks)
        while outstanding:
            for sandbox in self._sandboxes:
                if sandbox.task is None and pending:
                    sandbox.task = pending.popleft()
                    sandbox.started = time.monotonic()
                    with contextlib.suppress(OSError):
                        sandbox.control.send(sandbox.task)  # a dead sandbox is noticed below
            busy = [s for s in self._sandboxes if s.task is not None]
            deadlines = [s.started + self._backstop(s.task) for s in busy]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 1.0
            readable = multiprocessing.connection.wait(
                [s.control for s in busy], timeout=min(wait_s + 0.01, 1.0)
            )
            for sandbox in list(busy):
                outcome = self._poll(sandbox, readable)
                if outcome is not None:
                    outstanding -= 1
                    yield outcome

    def _backstop(self, task: tuple[Any, ...]) -> float:
        """The zygote enforces the limits; the parent steps in only if it stops answering."""
        limit = self.config.wall_limit_s if task[0] == "program" else self.config.call_timeout_s
        return limit + 30.0

    def _poll(self, sandbox: _Sandbox, readable: list[Any]) -> tuple[int, dict] | None:
        task = sandbox.task
        elapsed = time.monotonic() - sandbox.started
        problem = None
        if sandbox.control in readable:
            try:
                data = sandbox.control.recv_bytes(self._max_message(task))
                message = wire.decode(data, self._max_message(task))
                facts = _checked_facts(message, task[1])
            except (EOFError, OSError) as exc:
                problem = ("crash", f"the sandbox died ({type(exc).__name__}); restarted")
            except wire.WireError as exc:
                problem = ("forbidden", f"the sandbox sent a malformed message ({exc})")
            else:
                sandbox.task = None
                if task[0] == "program":
                    return task[1], sandbox_child.classify_program(facts, self.config)
                return task[1], sandbox_child.classify_call(facts, self.config)
        elif sandbox.process.poll() is not None:
            problem = ("crash", f"the sandbox exited ({sandbox.process.returncode}); restarted")
        elif elapsed > self._backstop(task):
            problem = ("timeout", f"no answer for {elapsed:.0f} s wall-clock; sandbox killed")
        if problem is None:
            return None
        sandbox.task = None
        self._replace(sandbox)
        kind, error = problem
        fields: dict[str, Any] = {"error_kind": kind, "error": error, "seconds": elapsed}
        fields["png" if task[0] == "program" else "value"] = None
        return task[1], fields

    def _max_message(self, task: tuple[Any, ...]) -> int:
        if task[0] == "program":
            return 2 * sandbox_child._message_limit(self.config) + (1 << 16)
        return self.config.max_call_result_bytes + (1 << 16)


def _checked_facts(message: Any, index: int) -> dict[str, Any]:
    """The zygote's report on one task, type-checked (its `raw` is decoded by classify_*)."""
    facts = message.get("facts") if isinstance(message, dict) else None
    types = {"code": int, "timed_out": bool, "overflow": bool, "stray": int, "raw": bytes}
    ok = (
        isinstance(facts, dict)
        and message.get("index") == index
        and set(facts) == {*types, "cpu", "seconds"}
        and all(type(facts[k]) is t for k, t in types.items())
        and all(isinstance(facts[k], (int, float)) for k in ("cpu", "seconds"))
    )
    if not ok:
        raise wire.WireError("not a task report for this task")
    return facts


def run_programs(
    programs: Sequence[str], config: SandboxConfig = SandboxConfig()
) -> list[FigureResult]:
    """One-shot convenience: start a pool, run `programs`, stop the pool."""
    with FigureExecutor(config) as executor:
        return executor.run(programs)
