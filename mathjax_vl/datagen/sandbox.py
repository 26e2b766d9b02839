"""A pool of warm worker processes that run figure programs and return their PNG bytes.

Why a pool of warm workers: a fresh interpreter that imports matplotlib costs about a second, the
figure itself ~25 ms. Each worker imports matplotlib once, then `exec`s program after program, so
per-figure cost is close to the raw draw-and-encode cost. Programs are ours (families' figure
programs) or a model's (MathCoder-VL's model-in-the-loop step), so every run is contained:

- a CPU-time limit per program (SIGPROF in the worker: load-independent, so the engine's output
  does not change on a busy machine) and a generous wall-clock backstop enforced by the PARENT (the
  worker is SIGKILLed and a fresh one started), so neither an infinite loop nor a blocked call can
  stall the run;
- an address-space limit (`RLIMIT_AS`) and an output-size limit (`RLIMIT_FSIZE`) set in the worker,
  so a 10 GB allocation raises MemoryError inside the program instead of taking the machine down;
- an empty working directory for every program (the worker's own, emptied after each) and a
  Python audit hook (`sys.addaudithook`) that refuses writes, deletes, renames, mkdir/chmod
  outside that directory, and refuses subprocesses, os.system/exec/fork, sockets, signals to
  other processes, ctypes and setrlimit; a refused action is recorded even when the program
  catches the PermissionError;
- the worker reads the PNG the program saved to `sys.argv[1]` and sends the bytes back; a program
  that makes no image, or not a PNG, is reported as such.

NOT a security boundary: the audit hook is Python-level; native code (a C extension, a ctypes call
made before the hook, a memory-corruption bug) can bypass it, and the process runs with the
parent's user id. It stops accidents and sloppy generated code, not a hostile author. Use a
container / seccomp / a separate user for untrusted code at scale.

A worker is recycled (killed and replaced) after a failure that may leave it in a bad state
(timeout, crash, MemoryError) and every `max_tasks_per_worker` programs; ordinary Python
exceptions, syntax errors and refused actions are cleaned up in place (`plt.close("all")`,
rcParams restored, cwd reset).

Besides the image, the worker reports which drawn text labels fall outside the canvas (measured on
the actual renderer during `savefig`), for the quality gate "no label clipped off the canvas".
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import multiprocessing.connection
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Failure kinds a FigureResult can carry (quality/engine reports count by these strings).
ERROR_KINDS = (
    "timeout",  # ran past the wall-clock limit; worker killed
    "memory",  # MemoryError (the address-space limit was hit)
    "forbidden",  # a refused action (write/delete outside its dir, subprocess, socket, ...)
    "syntax",  # the source does not compile
    "exception",  # any other exception raised by the program
    "crash",  # the worker process died (segfault, abort, os._exit, ...)
    "no_image",  # ran fine but saved nothing at sys.argv[1]
    "not_png",  # saved a file that is not a PNG
    "image_too_large",  # PNG bigger than max_image_bytes
)

# Failures after which the worker process is replaced rather than reused: its state is unknown
# (killed mid-run, died, or a MemoryError may have left half-built C structures). A refused action
# is stopped BEFORE it happens, so the worker is clean and stays (cheap for model-in-the-loop runs).
_RECYCLE_AFTER = frozenset({"memory", "crash", "timeout"})


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
    """Limits and pool size for the figure executor. Every knob is here, none is hidden."""

    workers: int = 1
    # CPU seconds per program, enforced in the worker (SIGPROF): independent of machine load, so
    # a busy machine cannot turn a good figure into a "timeout" and change the engine's output.
    timeout_s: float = 10.0
    memory_limit_bytes: int = 2 * 1024**3  # RLIMIT_AS of each worker (address space)
    max_image_bytes: int = 16 * 1024**2  # RLIMIT_FSIZE and the largest PNG accepted
    max_tasks_per_worker: int = 2000  # recycle periodically to bound leaks in matplotlib caches
    startup_timeout_s: float = 60.0  # a worker must import matplotlib within this
    # Wall clock per program, enforced by the parent (SIGKILL): the backstop for what the CPU
    # timer cannot see (sleeping, blocking, a program that ignores SIGPROF). None: 3 x timeout_s
    # + 20 s, generous so that only a stuck program, not a loaded machine, reaches it.
    wall_timeout_s: float | None = None
    # Wall clock per trusted job (map_calls); a backstop only (its figures have CPU limits), so
    # generous: a job killed on a loaded machine would change the engine's output.
    call_timeout_s: float = 600.0
    autosave_open_figure: bool = True  # no file at sys.argv[1] but a figure open: save it
    clip_tolerance_px: float = 0.5  # text extents may exceed the canvas by this much
    output_tail_chars: int = 2000  # how much of a failing program's stdout/stderr is kept
    # Reuse plain-text measurements across the figures of a worker (identical numbers, one
    # FreeType shaping saved per label; see _share_text_metrics_across_figures).
    share_text_metrics: bool = True
    # Modules each worker imports before its first program (the "warm" part).
    preload: tuple[str, ...] = ("numpy", "matplotlib", "matplotlib.pyplot", "matplotlib.patches")

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"SandboxConfig.workers must be >= 1, got {self.workers}")
        if self.timeout_s <= 0:
            raise ValueError(f"SandboxConfig.timeout_s must be > 0, got {self.timeout_s}")

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
    cpu_seconds: float = 0.0  # CPU time of the worker for this program (load-independent)
    clipped_labels: tuple[str, ...] = ()  # drawn texts whose extent leaves the canvas
    violations: tuple[str, ...] = ()  # refused actions (even if the program caught the error)
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
# Worker side (the zygote and the workers forked from it).
# --------------------------------------------------------------------------------------------

_WRITE_FLAGS = (
    os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    if hasattr(os, "O_WRONLY")
    else 0
)
_PATH_EVENTS = {  # audit event -> indices of path arguments that must stay inside the dir
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.replace": (0, 1),
    "os.link": (0, 1),
    "os.symlink": (0, 1),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "os.chflags": (0,),
    "os.lchown": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
    "shutil.rmtree": (0,),
    "shutil.move": (0, 1),
    "shutil.copyfile": (1,),
    "shutil.copytree": (1,),
}
_REFUSED_PREFIXES = (
    "subprocess.",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.killpg",
    "os.startfile",
    "os.putenv",
    "os.unsetenv",
    "pty.spawn",
    "socket.",
    "ctypes.",
    "resource.setrlimit",
    "resource.prlimit",
    "sys.addaudithook",
    "webbrowser.open",
    "urllib.Request",
    "ftplib.",
    "smtplib.",
    "http.client.",
)


class _Guard:
    """Mutable state of the audit hook: armed only while a program runs."""

    def __init__(self) -> None:
        self.allowed: str | None = None
        self.violations: list[str] = []

    def inside(self, path: Any) -> bool:
        if isinstance(path, int) or path is None:
            return True  # an already-open descriptor: its open was checked
        try:
            real = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        return real == self.allowed or real.startswith(self.allowed + os.sep)

    def refuse(self, message: str) -> None:
        self.violations.append(message)
        raise PermissionError(f"sandbox: {message}")

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.allowed is None:
            return
        if event == "open":
            path, mode, flags = [*args, None, None][:3]
            writes = (mode is not None and any(c in str(mode) for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writes and not self.inside(path):
                self.refuse(f"open {path!r} for writing outside the output dir")
            return
        if event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                if i < len(args) and not self.inside(args[i]):
                    self.refuse(f"{event} {args[i]!r} outside the output dir")
            return
        if event.startswith(_REFUSED_PREFIXES):
            self.refuse(f"{event} is not allowed")


class _ProgramTimeout(BaseException):
    """Raised by SIGPROF inside a program; BaseException so `except Exception` cannot eat it."""


_DRAWN_TEXT: list[tuple[str, float, float, float, float, float, float]] = []


def _prepare_interpreter(config: SandboxConfig) -> None:
    """Zygote-side, once: import matplotlib & co. and measure every text label drawn."""
    os.environ["MPLBACKEND"] = "Agg"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import importlib

    for name in config.preload:
        importlib.import_module(name)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot
    import matplotlib.text

    original_text_draw = matplotlib.text.Text.draw
    original_get_layout = matplotlib.text.Text._get_layout

    def text_draw(self, renderer):  # type: ignore[no-untyped-def]
        if not (self.get_visible() and self.get_text().strip()):
            return original_text_draw(self, renderer)
        # The extent is the layout draw() computes, placed where draw() puts it. Reusing that
        # layout (instead of `get_window_extent`, which lays the text out again and toggles the
        # figure's dpi) keeps the clip measurement at a few microseconds per label.
        memo: list[Any] = []
        if not self.get_wrap():  # a wrapped text is laid out on its re-wrapped string

            def layout_once(r):  # type: ignore[no-untyped-def]
                if r is not renderer:
                    return original_get_layout(self, r)
                if not memo:
                    memo.append(original_get_layout(self, r))
                return memo[0]

            self._get_layout = layout_once
        try:
            original_text_draw(self, renderer)
        finally:
            self.__dict__.pop("_get_layout", None)
        try:
            if memo:
                x, y = self.get_transform().transform(self.get_unitless_position())
                box = memo[0][0].translated(x, y)
            else:
                box = self.get_window_extent(renderer)
            width, height = renderer.get_canvas_width_height()
            _DRAWN_TEXT.append((self.get_text(), box.x0, box.y0, box.x1, box.y1, width, height))
        except Exception:
            pass

    matplotlib.text.Text.draw = text_draw
    if config.share_text_metrics:
        _share_text_metrics_across_figures()
    # Draw once so font files, glyph caches and the PNG encoder are loaded before forking: every
    # worker then starts with them in (copy-on-write) memory instead of paying on its first figure.
    import io

    fig = matplotlib.pyplot.figure(figsize=(2, 2), dpi=50)
    fig.gca().plot([0, 1], [0, 1])
    fig.gca().set_title("warm-up 0123456789 ABC xyz °∠△⊥∥√π²")
    fig.savefig(io.BytesIO(), format="png")
    matplotlib.pyplot.close(fig)
    _DRAWN_TEXT.clear()
    _freeze_heap()


_TEXT_METRICS_CACHE_SIZE = 50_000


def _share_text_metrics_across_figures() -> None:
    """Let every figure of this worker reuse text measurements (width, height, descent).

    matplotlib caches `get_text_width_height_descent` per renderer INSTANCE, and each figure gets
    a new renderer, so every label of every figure is shaped twice by FreeType (measure, then
    draw). For plain (non-math) text on the
    Agg renderer the result depends only on the string, the font properties, the dpi, the font
    files they resolve to and the hinting/kerning settings, so a process-wide cache keyed on
    exactly those returns the numbers a fresh interpreter computes (the image-code reproduction
    test checks it byte for byte). Math text, usetex and other renderers are not cached.
    """
    import matplotlib
    import matplotlib.text
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import fontManager

    original = getattr(matplotlib.text, "_get_text_metrics_with_cache", None)
    if original is None or not hasattr(fontManager, "_find_fonts_by_props"):
        return  # another matplotlib version: keep its own caching
    cache: dict[tuple[Any, ...], tuple[float, float, float]] = {}
    rc = matplotlib.rcParams

    def metrics(renderer, text, fontprop, ismath, dpi):  # type: ignore[no-untyped-def]
        if ismath is not False or type(renderer) is not RendererAgg:
            return original(renderer, text, fontprop, ismath, dpi)
        key = (
            text,
            fontprop.copy(),
            dpi,
            renderer.dpi,
            tuple(map(str, fontManager._find_fonts_by_props(fontprop))),
            rc["text.hinting"],
            rc["text.hinting_factor"],
            rc["text.kerning_factor"],
            rc["font.enable_last_resort"],
        )
        value = cache.get(key)
        if value is None:
            if len(cache) >= _TEXT_METRICS_CACHE_SIZE:
                cache.clear()
            value = cache[key] = original(renderer, text, fontprop, ismath, dpi)
        return value

    matplotlib.text._get_text_metrics_with_cache = metrics


def _freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's reach (`gc.freeze`).

    Why: a figure allocates thousands of container objects, so the cyclic collector runs many
    times per figure, and each older-generation pass walks the whole heap (matplotlib, numpy,
    sympy: 100K+ objects) that will never be garbage. Frozen, they are skipped and, in the
    zygote, not written to by the collector, so forked workers share the pages.
    """
    import gc

    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def _restored_rc_params(rc_params: Any) -> Iterator[None]:
    """What `matplotlib.rc_context()` does for a program (its changes to rcParams are undone),
    with a raw dict snapshot: `RcParams.copy()` re-sets every key one by one."""
    saved = dict(dict.items(rc_params))  # dict's own view: no per-key RcParams.__getitem__
    saved.pop("backend", None)
    try:
        yield
    finally:
        dict.update(rc_params, saved)


def _worker_main(
    tasks: multiprocessing.connection.Connection,
    results: multiprocessing.connection.Connection,
    config: SandboxConfig,
    scratch_parent: str,
) -> None:
    """Forked from the zygote: apply limits and the guard, then run tasks until None."""
    import importlib
    import io
    import resource
    import shutil

    import matplotlib
    import matplotlib.pyplot as plt

    drawn = _DRAWN_TEXT
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(
        resource.RLIMIT_FSIZE, (config.max_image_bytes + 1, config.max_image_bytes + 1)
    )
    resource.setrlimit(resource.RLIMIT_AS, (config.memory_limit_bytes, config.memory_limit_bytes))
    guard = _Guard()
    sys.addaudithook(guard.hook)
    scratch_root = tempfile.mkdtemp(dir=scratch_parent)
    home = os.getcwd()
    results.send(("ready", os.getpid()))

    def on_alarm(signum, frame):  # type: ignore[no-untyped-def]
        raise _ProgramTimeout()

    signal.signal(signal.SIGPROF, on_alarm)
    state = {"tainted": False, "frozen": False}
    # One working directory per worker, emptied after every program (a fresh, empty directory
    # each time, as before): creating and removing a directory per program cost ~5-7 ms of WALL
    # time on this ext4 /tmp (journalled metadata), emptying it well under 1 ms.
    workdirs = {"path": tempfile.mkdtemp(dir=scratch_root)}
    workdirs["real"] = os.path.realpath(workdirs["path"])

    def empty_workdir() -> None:
        """Remove what the program left; if something resists, move on to a new directory."""
        path = workdirs["path"]
        with contextlib.suppress(OSError):
            for entry in os.scandir(path):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
        try:
            left = os.listdir(path)
        except OSError:
            left = ["?"]
        if left:
            shutil.rmtree(path, ignore_errors=True)
            workdirs["path"] = tempfile.mkdtemp(dir=scratch_root)
            workdirs["real"] = os.path.realpath(workdirs["path"])

    def run_program(source: str) -> dict[str, Any]:
        """Run one program under the guard; the result dict of a FigureResult (no index)."""
        workdir = workdirs["path"]
        out_path = os.path.join(workdir, "figure.png")
        captured = io.StringIO()
        error_kind = error = None
        drawn.clear()
        guard.violations = []
        start = time.perf_counter()
        cpu_start = time.process_time()
        saved_argv = sys.argv
        try:
            code = compile(source, "<figure program>", "exec")
        except (SyntaxError, ValueError) as exc:
            error_kind, error = "syntax", f"{type(exc).__name__}: {exc}"
            code = None
        if code is not None:
            os.chdir(workdir)
            sys.argv = ["figure.py", out_path]
            namespace = {"__name__": "__main__", "__file__": os.path.join(workdir, "figure.py")}
            try:
                with (
                    _restored_rc_params(matplotlib.rcParams),
                    contextlib.redirect_stdout(captured),
                    contextlib.redirect_stderr(captured),
                ):
                    guard.allowed = workdirs["real"]
                    signal.setitimer(signal.ITIMER_PROF, config.timeout_s)  # CPU time
                    try:
                        exec(code, namespace)
                    finally:
                        signal.setitimer(signal.ITIMER_PROF, 0)
                        guard.allowed = None
            except _ProgramTimeout:
                error_kind = "timeout"
                error = f"used more than {config.timeout_s:g} s of CPU; interrupted"
            except SystemExit as exc:
                if exc.code not in (None, 0):
                    error_kind, error = "exception", f"SystemExit({exc.code!r})"
            except MemoryError as exc:
                error_kind, error = "memory", f"MemoryError: {exc}"
            except BaseException as exc:
                error_kind, error = "exception", f"{type(exc).__name__}: {exc}"
            finally:
                guard.allowed = None
                sys.argv = saved_argv
                if (
                    error_kind is None
                    and config.autosave_open_figure
                    and not os.path.exists(out_path)
                    and plt.get_fignums()
                ):
                    # Model-written code often ends with plt.show() (a no-op on Agg) instead of
                    # saving to sys.argv[1]: keep the figure it left open, as MathCoder-VL does.
                    with contextlib.suppress(Exception):
                        plt.gcf().savefig(out_path, format="png")
                        captured.write("\n[sandbox] saved the open figure to sys.argv[1]\n")
                os.chdir(home)
                plt.close("all")
        if guard.violations:
            error_kind, error = "forbidden", "; ".join(guard.violations)
        if error_kind in _RECYCLE_AFTER:
            state["tainted"] = True
        png = None
        if error_kind is None:
            if not os.path.isfile(out_path):
                error_kind, error = "no_image", "the program saved no file at sys.argv[1]"
            elif os.path.getsize(out_path) > config.max_image_bytes:
                error_kind, error = "image_too_large", f"{os.path.getsize(out_path)} bytes"
            else:
                with open(out_path, "rb") as f:
                    png = f.read()
                if not png.startswith(PNG_MAGIC):
                    error_kind, error, png = "not_png", "saved file is not a PNG", None
        clipped = []
        for text, x0, y0, x1, y1, width, height in drawn:
            tol = config.clip_tolerance_px
            if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
                clipped.append(text)
        empty_workdir()
        return {
            "png": png,
            "error_kind": error_kind,
            "error": error,
            "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu_start,
            "clipped_labels": tuple(dict.fromkeys(clipped)),
            "violations": tuple(guard.violations),
            "output": captured.getvalue()[-config.output_tail_chars :],
        }

    while True:
        task = tasks.recv()
        if task is None:
            break
        if task[0] == "program":
            _, index, source = task
            results.send({"index": index, **run_program(source)})
            continue
        _, index, target, payload = task  # ("call", index, "module:function", payload)
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            module_name, function_name = target.split(":")
            function = getattr(importlib.import_module(module_name), function_name)
            value, error_kind, error = function(payload, run_program), None, None
        except MemoryError as exc:
            value, error_kind, error = None, "memory", f"MemoryError: {exc}"
        except Exception as exc:
            import traceback

            value, error_kind = None, "exception"
            error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
        results.send(
            {
                "index": index,
                "value": value,
                "error_kind": error_kind,
                "error": error,
                "seconds": time.perf_counter() - start,
                "cpu_seconds": time.process_time() - cpu_start,
            }
        )
        if state["tainted"]:
            break  # a program inside the job timed out / ran out of memory: start afresh
        if not state["frozen"]:  # the first job imported the engine (sympy, families): freeze
            _freeze_heap()
            state["frozen"] = True

    shutil.rmtree(scratch_root, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Parent side.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Worker:
    pid: int  # a child of the zygote, not of this process: killed by pid, death seen as EOF
    send: multiprocessing.connection.Connection  # parent -> worker
    recv: multiprocessing.connection.Connection  # worker -> parent (EOF when it dies)
    ready: bool = False
    task: tuple[Any, ...] | None = None  # (kind, index, ...) while busy
    started: float = 0.0
    done: int = 0

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def _zygote_entry(socket_fd: int) -> None:
    """Entry point of the zygote interpreter: warm imports once, then fork a worker per request.

    Forking from a warm zygote makes a fresh worker cost milliseconds instead of a matplotlib
    import (about a second), so recycling after every failure is cheap. The zygote itself never
    runs a program; it is single-threaded (BLAS threads pinned to 1), so forking it is safe.
    """
    import socket
    from multiprocessing import reduction

    sock = socket.socket(fileno=socket_fd)
    control = multiprocessing.connection.Connection(os.dup(socket_fd))
    config, scratch_parent = control.recv()
    _prepare_interpreter(config)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel
    control.send("ready")
    while control.recv() == "fork":
        read_fd, write_fd = reduction.recvfds(sock, 2)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            sock.close()
            control.close()
            code = 0
            try:
                _worker_main(
                    multiprocessing.connection.Connection(read_fd, writable=False),
                    multiprocessing.connection.Connection(write_fd, readable=False),
                    config,
                    scratch_parent,
                )
            except BaseException:
                code = 1
            os._exit(code)
        os.close(read_fd)
        os.close(write_fd)
        control.send(pid)


class FigureExecutor:
    """The worker pool. Use as a context manager; `run(programs)` returns results in order.

    Results never raise for a bad program: failures come back as `FigureResult.error_kind`.
    Workers are forked from a zygote interpreter started with `subprocess` (not forked from this
    process, which may hold JAX threads; not multiprocessing's spawn, which re-imports the
    caller's `__main__`).
    """

    def __init__(self, config: SandboxConfig = SandboxConfig()):
        self.config = config
        self._workers: list[_Worker] = []
        self._zygote: subprocess.Popen | None = None
        self.restarts = 0

    def __enter__(self) -> FigureExecutor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if self._zygote is None:
            self._start_zygote()
        while len(self._workers) < self.config.workers:
            self._workers.append(self._spawn())

    def _start_zygote(self) -> None:
        import socket

        self._scratch = tempfile.mkdtemp(prefix="mathjax_vl_sandbox_")
        self._socket, child = socket.socketpair()
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        env["MPLBACKEND"] = "Agg"
        # Fixed str hashing: set iteration order (e.g. in a program generator) is then the same in
        # every worker, so outputs cannot depend on which worker ran an item.
        env["PYTHONHASHSEED"] = "0"
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"
        stderr_fd, self._stderr_path = tempfile.mkstemp(
            prefix="worker_", suffix=".log", dir=self._scratch
        )
        code = (
            f"from mathjax_vl.datagen.sandbox import _zygote_entry; _zygote_entry({child.fileno()})"
        )
        self._zygote = subprocess.Popen(
            [sys.executable, "-c", code],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr_fd,
            env=env,
            cwd=tempfile.gettempdir(),
        )
        child.close()
        os.close(stderr_fd)
        self._control = multiprocessing.connection.Connection(os.dup(self._socket.fileno()))
        self._control.send((self.config, self._scratch))
        if not self._control.poll(self.config.startup_timeout_s):
            self._fail_start("did not start")
        try:
            assert self._control.recv() == "ready"
        except (EOFError, OSError, AssertionError):
            self._fail_start("died during start-up")

    def _fail_start(self, what: str) -> None:
        with open(self._stderr_path, errors="replace") as f:
            log = f.read()[-self.config.output_tail_chars :]
        self.close()
        raise RuntimeError(
            f"figure worker zygote {what} (timeout {self.config.startup_timeout_s} s); check "
            f"that matplotlib imports. Its stderr:\n{log}"
        )

    def _spawn(self) -> _Worker:
        from multiprocessing import reduction

        to_child_r, to_child_w = os.pipe()
        to_parent_r, to_parent_w = os.pipe()
        try:
            self._control.send("fork")
            reduction.sendfds(self._socket, [to_child_r, to_parent_w])
            pid = self._control.recv()
        except (EOFError, OSError) as exc:
            raise RuntimeError(
                f"figure worker zygote is gone ({exc}); see {self._stderr_path}"
            ) from exc
        finally:
            os.close(to_child_r)
            os.close(to_parent_w)
        send = multiprocessing.connection.Connection(to_child_w, readable=False)
        recv = multiprocessing.connection.Connection(to_parent_r, writable=False)
        return _Worker(pid, send, recv, started=time.monotonic())

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        worker.send.close()
        worker.recv.close()

    def _replace(self, worker: _Worker) -> None:
        self._discard(worker)
        self._workers[self._workers.index(worker)] = self._spawn()
        self.restarts += 1

    def close(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(OSError):
                if worker.ready and worker.task is None:
                    worker.send.send(None)
        deadline = time.monotonic() + 2
        for worker in self._workers:
            while worker.alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            self._discard(worker)
        self._workers = []
        if self._zygote is not None:
            with contextlib.suppress(OSError):
                self._control.send(None)
            try:
                self._zygote.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._zygote.kill()
                self._zygote.wait(timeout=5)
            self._control.close()
            self._socket.close()
            self._zygote = None
            shutil.rmtree(self._scratch, ignore_errors=True)

    def run(self, programs: Sequence[str]) -> list[FigureResult]:
        """Run all programs; the i-th result belongs to the i-th program."""
        results: list[FigureResult | None] = [None] * len(programs)
        for result in self.imap_unordered(programs):
            results[result.index] = result
        return results  # type: ignore[return-value]

    def imap_unordered(self, programs: Sequence[str]) -> Iterator[FigureResult]:
        """Yield each program's result as it completes (for progress bars)."""
        for message in self._imap([("program", source) for source in programs]):
            yield FigureResult(**message)

    def map_calls(self, target: str, payloads: Sequence[Any]) -> Iterator[CallResult]:
        """Run trusted `target(payload, run_program)` ("module:function") in the workers.

        `run_program(source) -> dict` runs a figure program under the guard inside the worker, so
        a job can build a problem, render its figures and check them without shipping programs
        and images back and forth. Results are yielded as they complete (use `.index`).
        """
        for message in self._imap([("call", target, payload) for payload in payloads]):
            yield CallResult(**message)

    def _imap(self, tasks: Sequence[tuple[Any, ...]]) -> Iterator[dict[str, Any]]:
        if not self._workers:
            self.start()
        pending = collections.deque((kind, i, *rest) for i, (kind, *rest) in enumerate(tasks))
        outstanding = len(tasks)
        while outstanding:
            for worker in self._workers:
                if worker.ready and worker.task is None and pending:
                    worker.task = pending.popleft()
                    worker.started = time.monotonic()
                    with contextlib.suppress(OSError):
                        worker.send.send(worker.task)  # a dead worker is noticed below
            deadlines = [w.started + self._limit(w) for w in self._workers if w.task or not w.ready]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 1.0
            readable = multiprocessing.connection.wait(
                [w.recv for w in self._workers], timeout=min(wait_s + 0.01, 1.0)
            )
            for worker in list(self._workers):
                outcome = self._poll(worker, readable)
                if outcome is not None:
                    outstanding -= 1
                    yield outcome

    def _limit(self, worker: _Worker) -> float:
        if not worker.ready:
            return self.config.startup_timeout_s
        if worker.task[0] == "program":
            return self.config.wall_limit_s
        return self.config.call_timeout_s

    def _failure(self, task: tuple[Any, ...], kind: str, error: str, seconds: float) -> dict:
        message = {"index": task[1], "error_kind": kind, "error": error, "seconds": seconds}
        message["png" if task[0] == "program" else "value"] = None
        return message

    def _poll(self, worker: _Worker, readable: list[Any]) -> dict[str, Any] | None:
        config = self.config
        died = False
        if worker.recv in readable:
            try:
                message = worker.recv.recv()
            except (EOFError, OSError):
                message, died = None, True
            if isinstance(message, tuple) and message[0] == "ready":
                worker.ready, worker.started = True, time.monotonic()
                return None
            if isinstance(message, dict):
                worker.task = None
                worker.done += 1
                worn_out = worker.done >= config.max_tasks_per_worker
                if message["error_kind"] in _RECYCLE_AFTER or worn_out:
                    self._replace(worker)
                return message
        task = worker.task
        elapsed = time.monotonic() - worker.started
        if died or not worker.alive():
            if not worker.ready:
                self._discard(worker)
                raise RuntimeError(
                    f"figure worker {worker.pid} died during start-up; check that "
                    f"memory_limit_bytes={config.memory_limit_bytes} leaves room for matplotlib"
                )
            self._replace(worker)
            if task is None:
                return None
            return self._failure(task, "crash", f"worker process {worker.pid} died", elapsed)
        if task is not None and elapsed > self._limit(worker):
            self._replace(worker)
            limit = self._limit(worker)
            return self._failure(
                task, "timeout", f"ran longer than {limit:g} s wall-clock; worker killed", elapsed
            )
        if not worker.ready and elapsed > config.startup_timeout_s:
            raise RuntimeError(f"figure worker did not start within {config.startup_timeout_s} s")
        return None


def run_programs(
    programs: Sequence[str], config: SandboxConfig = SandboxConfig()
) -> list[FigureResult]:
    """One-shot convenience: start a pool, run `programs`, stop the pool."""
    with FigureExecutor(config) as executor:
        return executor.run(programs)
