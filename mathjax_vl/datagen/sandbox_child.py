"""Inside the sandbox: the zygote, the one-program children it forks, and their result checks.

The zygote (one per sandbox, PID 1 of its PID namespace under bwrap/unshare) warms matplotlib once
(sandbox_mpl), then:

- for every program task, forks a FRESH child, which applies rlimits, the seccomp filter and the
  audit hook (sandbox_guard), runs the program in a private, empty working dir, and writes its
  result as data (wire: PNG bytes + JSON) to a pipe, then exits;
- call tasks (trusted engine code, `FigureExecutor.map_calls`) go to the sandbox's warm job
  worker (sandbox_jobs), and each figure program a job renders runs in ITS OWN fresh grandchild,
  as above.

After every task the zygote kills what is left (as PID 1: every process of the namespace) and
reaps it, so nothing a program started survives it, and a program that tampered with its own
process dies with it: the next program starts from the zygote's untouched state. The zygote
never runs untrusted code and never decodes what a child sent: it forwards the bytes with the
exit status, CPU time and wall time it measured, and the parent classifies (`classify_program`).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import multiprocessing.connection
import os
import select
import signal
import sys
import time
from typing import Any

from mathjax_vl.datagen import sandbox_guard as G
from mathjax_vl.datagen import sandbox_mpl, wire

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# What a program's own report may claim (anything else is a tampered report).
_CLAIMABLE = (None, "timeout", "memory", "forbidden", "syntax", "exception", "no_image")
_REPORT_KEYS = {"png", "error_kind", "error", "clipped_labels", "output"}


# fork(2) without Python's at-fork hooks. The zygote and job processes are single-threaded and
# fork at a quiet point, so the hooks' work (re-initialising locks of other threads) is not
# needed, while one of them (matplotlib clearing its font cache) would make every program reload
# its fonts: ~3 ms per program, plus the first-figure cost.
_raw_fork = ctypes.PyDLL(None).fork


def _fork() -> int:
    pid = _raw_fork()
    if pid < 0:
        raise OSError(ctypes.get_errno(), "fork failed")
    return pid


class _ProgramTimeout(BaseException):
    """Raised by SIGPROF inside a program; BaseException so `except Exception` cannot eat it."""


def _message_limit(config: Any) -> int:
    return config.max_image_bytes + 4 * config.output_tail_chars + (1 << 20)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _only_fds(keep: tuple[int, ...]) -> None:
    """Close every descriptor but `keep` and read-only regular files; 0, 1, 2 -> /dev/null.

    The read-only files are the zygote's open fonts: matplotlib's cached FT2Font objects read
    through them (fonts are readable to programs anyway). The control socket to the parent, the
    log and every pipe are closed.
    """
    import fcntl
    import stat

    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        if fd not in keep:
            os.dup2(devnull, fd)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2 or fd in keep:
            continue
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
            read_only = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        except OSError:
            continue  # the descriptor listdir itself used
        if not (regular and read_only) or fd == devnull:
            os.close(fd)


def _program_child(source: str, workdir: str, result_fd: int, env: dict[str, Any]) -> None:
    """In a fresh fork: restrict this process, run one program, report, exit. Never returns."""
    config = env["config"]
    _only_fds((result_fd,))
    G.die_with_parent()
    os.chdir(workdir)
    G.set_limits(config, config.timeout_s)
    G.install_seccomp(env["seccomp"])
    captured = io.StringIO()
    tail = config.output_tail_chars
    out_path = os.path.join(workdir, "figure.png")

    def on_alarm(signum: int, frame: Any) -> None:
        raise _ProgramTimeout()

    signal.signal(signal.SIGPROF, on_alarm)
    import matplotlib.pyplot as plt

    drawn = sandbox_mpl.DRAWN_TEXT
    drawn.clear()
    status_fd = os.open("/proc/self/status", os.O_RDONLY)  # opened before the hook, read after
    G.install_hook(G.make_hook(workdir, env["read_roots"], result_fd, captured, tail))
    error_kind = error = None
    try:
        code = compile(source, "<figure program>", "exec")
    except (SyntaxError, ValueError) as exc:
        error_kind, error, code = "syntax", f"{type(exc).__name__}: {exc}", None
    if code is not None:
        sys.argv = ["figure.py", out_path]
        namespace = {"__name__": "__main__", "__file__": os.path.join(workdir, "figure.py")}
        try:
            with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
                signal.setitimer(signal.ITIMER_PROF, config.timeout_s)  # CPU time
                try:
                    exec(code, namespace)
                finally:
                    signal.setitimer(signal.ITIMER_PROF, 0)
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
        if (
            error_kind is None
            and config.autosave_open_figure
            and not os.path.exists(out_path)
            and plt.get_fignums()
        ):
            # Model-written code often ends with plt.show() (a no-op on Agg) instead of saving
            # to sys.argv[1]: keep the figure it left open, as MathCoder-VL does.
            try:
                plt.gcf().savefig(out_path, format="png")
                captured.write("\n[sandbox] saved the open figure to sys.argv[1]\n")
            except Exception:
                pass
    threads = _thread_count(status_fd)
    if threads != 1:  # a thread left running could act after the program "returned"
        error_kind, error = "forbidden", f"threads still running when it returned ({threads})"
    png = None
    if error_kind is None:
        if not os.path.isfile(out_path):
            error_kind, error = "no_image", "the program saved no file at sys.argv[1]"
        elif os.path.getsize(out_path) <= config.max_image_bytes:
            with open(out_path, "rb") as f:
                png = f.read()
        else:
            png = b""  # the parent reports image_too_large from the size it is told
            error = str(os.path.getsize(out_path))
    tol = config.clip_tolerance_px
    clipped = [
        text
        for text, x0, y0, x1, y1, width, height in drawn
        if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol
    ]
    report = {
        "png": png,
        "error_kind": error_kind,
        "error": error,
        "clipped_labels": list(dict.fromkeys(clipped)),
        "output": captured.getvalue()[-tail:],
    }
    _write_all(result_fd, wire.encode(report))
    os._exit(0)


def _thread_count(status_fd: int) -> int:
    """Threads of this process, from /proc/self/status (-1: the descriptor was tampered with)."""
    try:
        status = os.pread(status_fd, 1 << 16, 0).decode("ascii", "replace")
        return int(status.split("\nThreads:", 1)[1].split()[0])
    except (OSError, IndexError, ValueError):
        return -1


def _collect(pid: int, fd: int, wall_s: float, max_bytes: int, pid1: bool) -> dict[str, Any]:
    """Read a child's bytes until it exits (or `wall_s` passes), then kill and reap everything."""
    start = time.perf_counter()
    deadline = start + wall_s
    pidfd = os.pidfd_open(pid)
    chunks: list[bytes] = []
    size, eof, exited, timed_out, overflow = 0, False, False, False, False
    while not (eof and exited):
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            timed_out = True
            break
        watch = ([] if exited else [pidfd]) + ([] if eof else [fd])
        readable = select.select(watch, [], [], remaining)[0]
        if fd in readable:
            chunk = os.read(fd, 1 << 20)
            eof = not chunk
            size += len(chunk)
            if size > max_bytes:
                overflow = True
                break
            chunks.append(chunk)
        if pidfd in readable:
            exited = True
            deadline = min(deadline, time.perf_counter() + 2.0)  # the pipe drains right away
    os.close(pidfd)
    os.close(fd)
    _kill(pid)
    if pid1:  # PID 1 of the sandbox's namespace: end every other process in it
        _kill(-1)
    _, status, usage = os.wait4(pid, 0)
    stray = 0
    if pid1:
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
            stray += 1
    return {
        "code": os.waitstatus_to_exitcode(status),  # negative: killed by that signal
        "timed_out": timed_out,
        "overflow": overflow,
        "stray": stray,
        "cpu": usage.ru_utime + usage.ru_stime,
        "seconds": time.perf_counter() - start,
        "raw": b"".join(chunks),
    }


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _new_workdir(parent: str) -> str:
    import tempfile

    return tempfile.mkdtemp(dir=parent)


def _remove_tree(path: str) -> None:
    """Delete a finished program's working dir, even one it made unwritable (chmod 0o500)."""
    import shutil

    for root, dirs, _ in os.walk(path):
        for d in dirs:
            try:
                os.chmod(os.path.join(root, d), 0o700, follow_symlinks=False)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)


def fork_program(source: str, env: dict[str, Any], pid1: bool = False) -> dict[str, Any]:
    """Run one program in a fresh child; the exit facts and its raw report (not yet trusted)."""
    config = env["config"]
    workdir = _new_workdir(env["work_root"])
    read_fd, write_fd = os.pipe()
    pid = _fork()
    if pid == 0:
        try:
            os.close(read_fd)
            _program_child(source, workdir, write_fd, env)
        finally:
            os._exit(70)
    os.close(write_fd)
    try:
        return _collect(pid, read_fd, config.wall_limit_s, _message_limit(config), pid1)
    finally:
        _remove_tree(workdir)


def classify_program(facts: dict[str, Any], config: Any) -> dict[str, Any]:
    """A FigureResult's fields (no index) from what a program's child did and sent."""
    result = {"png": None, "error_kind": None, "error": None, "clipped_labels": ()}
    result.update(seconds=facts["seconds"], cpu_seconds=facts["cpu"], violations=(), output="")
    code = facts["code"]
    report, problem = None, None
    if facts["raw"] and code != G.FORBIDDEN_EXIT:
        try:
            report = _checked_report(wire.decode(facts["raw"], _message_limit(config)))
        except wire.WireError as exc:
            problem = str(exc)
    cpu_limit = G.cpu_rlimit_seconds(config.timeout_s)
    if report is not None:
        result["output"] = report["output"]
    if facts["timed_out"]:
        kind, error = "timeout", f"ran longer than {config.wall_limit_s:g} s wall-clock; killed"
    elif facts["overflow"]:
        kind, error = "forbidden", "sent more data than a figure and its output can be"
    elif code == -signal.SIGSYS:
        kind = "forbidden"
        error = "made a system call the sandbox forbids (process creation, exec, socket, ...)"
    elif code in (-signal.SIGXCPU, -signal.SIGKILL) and facts["cpu"] >= cpu_limit - 0.5:
        kind, error = "timeout", f"used more than {cpu_limit} s of CPU (rlimit); killed"
    elif code == G.FORBIDDEN_EXIT:
        kind, error = "forbidden", "attempted a refused action"
        if facts["raw"].startswith(G.FORBIDDEN_TAG):
            message, _, output = facts["raw"][len(G.FORBIDDEN_TAG) :].partition(b"\0")
            error = message.decode("utf-8", "replace")[:2000] or error
            result["output"] = output.decode("utf-8", "replace")[-config.output_tail_chars :]
    elif facts["stray"]:
        kind, error = "forbidden", f"left {facts['stray']} process(es) behind"
    elif code == 0 and report is not None:
        kind, error = report["error_kind"], report["error"]
        result["clipped_labels"] = tuple(report["clipped_labels"])
        if kind is None:
            png = report["png"]
            if not isinstance(png, bytes) or not png.startswith(PNG_MAGIC):
                kind, error = "not_png", "saved file is not a PNG"
            elif len(png) > config.max_image_bytes or (png == b"" and error):
                kind, error = "image_too_large", f"{error or len(png)} bytes"
            else:
                result["png"] = png
    elif code == 0:
        kind, error = "forbidden", f"the program tampered with its result channel ({problem})"
    else:
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        kind, error = "crash", f"the program's process died ({how})"
    if kind == "image_too_large" and report is not None and report["png"] == b"":
        result["png"] = None
    result["error_kind"], result["error"] = kind, error
    if kind == "forbidden":
        result["violations"] = (error,)
    return result


def _checked_report(report: Any) -> dict[str, Any]:
    ok = (
        isinstance(report, dict)
        and set(report) == _REPORT_KEYS
        and report["error_kind"] in _CLAIMABLE
        and (report["png"] is None or isinstance(report["png"], bytes))
        and (report["error"] is None or isinstance(report["error"], str))
        and isinstance(report["output"], str)
        and isinstance(report["clipped_labels"], list)
        and all(isinstance(t, str) for t in report["clipped_labels"])
    )
    if not ok:
        raise wire.WireError("the report is not a program report")
    return report


# --------------------------------------------------------------------------------------------
# Trusted jobs (map_calls) and the zygote.
# --------------------------------------------------------------------------------------------


def classify_call(facts: dict[str, Any], config: Any) -> dict[str, Any]:
    """A CallResult's fields (no index) from what the job worker did and sent."""
    result = {"value": None, "seconds": facts["seconds"], "cpu_seconds": facts["cpu"]}
    if facts["timed_out"]:
        kind, error = "timeout", f"ran longer than {config.call_timeout_s:g} s wall-clock; killed"
    elif facts["overflow"]:
        kind, error = "crash", f"the job's result exceeds {config.max_call_result_bytes} bytes"
    elif facts["code"] != 0 or not facts["raw"]:
        kind, error = "crash", "the job worker died before answering; restarted"
    else:
        try:
            report = wire.decode(facts["raw"], config.max_call_result_bytes)
            if not isinstance(report, dict) or set(report) != {"value", "error_kind", "error"}:
                raise wire.WireError("not a job report")
            if report["error_kind"] not in (None, "memory", "exception"):
                raise wire.WireError(f"bad error kind {report['error_kind']!r}")
            result["value"] = report["value"]
            kind, error = report["error_kind"], report["error"]
        except wire.WireError as exc:
            kind, error = "forbidden", f"the job's result is not data ({exc})"
    result["error_kind"], result["error"] = kind, error
    return result


def zygote_main(control_fd: int) -> None:
    """Entry point of the sandbox's interpreter: warm up once, then fork a child per task."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = multiprocessing.connection.Connection(control_fd)
    setup = control.recv()  # from the trusted parent: config, paths, matplotlib's font list
    config = setup["config"]
    if setup.get("mpl_cache"):
        os.makedirs(os.environ["MPLCONFIGDIR"], exist_ok=True)
        for name, data in setup["mpl_cache"].items():
            with open(os.path.join(os.environ["MPLCONFIGDIR"], name), "wb") as f:
                f.write(data)
    os.makedirs(setup["work_root"], exist_ok=True)
    G.undumpable()
    sandbox_mpl.prepare_interpreter(config.preload, config.share_text_metrics)
    env = {
        "config": config,
        "work_root": setup["work_root"],
        "read_roots": tuple(setup["read_roots"]),
        "seccomp": G.seccomp_program(),
    }
    pid1 = os.getpid() == 1
    from mathjax_vl.datagen.sandbox_jobs import JobWorker

    jobs = JobWorker(env)
    control.send_bytes(wire.encode({"ready": os.getpid()}))
    while True:
        task = control.recv()
        if task is None:
            break
        cpu_start = time.process_time()
        if task[0] == "program":
            jobs.stop()  # as PID 1 the zygote ends every other process after a program
            facts = fork_program(task[2], env, pid1)
        else:
            _, _, target, payload = task
            facts = jobs.call(target, payload)
        facts["cpu"] += time.process_time() - cpu_start  # the zygote's own share (fork, reads)
        control.send_bytes(wire.encode({"index": task[1], "facts": facts}))
    jobs.stop()
