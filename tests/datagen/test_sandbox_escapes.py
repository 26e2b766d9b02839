"""Hostile programs against the sandbox: each known escape, under bubblewrap and under unshare.

For every program the test asserts what the issue asks: no file outside the program's own dir
changes (files it targets on the host are checked, and a unique token must not appear anywhere
it tried to write), no process outlives it (the sandbox's process tree is what it was before, and
no process anywhere carries the token), the parent never runs code the child sent (the marker
file a pickle's `__reduce__` would create does not exist), and the outcome is `forbidden`,
`timeout` or `memory` -- never ok, and through codify() never `kept`.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading

import pytest

from mathjax_vl.datagen.codify import codify
from mathjax_vl.datagen.sandbox import FigureExecutor, SandboxConfig

MODES = [m for m in ("bwrap", "unshare") if shutil.which(m)]
SECRET = "s3cr3t-token-in-the-parent-environment"
FIGURE = """
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(1, 1), dpi=40)
ax.plot([0, 1], [0, 1])
fig.savefig(sys.argv[1])
"""


@pytest.fixture(scope="module", params=MODES)
def sandbox(request, tmp_path_factory):
    os.environ["MATHJAX_VL_TEST_SECRET"] = SECRET  # what a cluster's credentials look like
    try:
        config = SandboxConfig(
            workers=1, timeout_s=0.5, wall_timeout_s=6.0, isolation=request.param
        )
        with FigureExecutor(config) as executor:
            executor.run([FIGURE])
            yield executor, _tree(executor)
    finally:
        del os.environ["MATHJAX_VL_TEST_SECRET"]


@pytest.fixture
def host(tmp_path):
    """Host files a program must not touch: a victim, a fake ~/.ssh key, a marker's place."""
    (tmp_path / "victim.txt").write_text("keep me")
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    (tmp_path / "home" / ".ssh" / "id_rsa").write_text("PRIVATE-KEY-MATERIAL")
    return tmp_path


def _tree(executor: FigureExecutor) -> set[int]:
    """Host pids of every process under the executor's sandboxes."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    seen, todo = set(), list(executor.launcher_pids())
    while todo:
        pid = todo.pop()
        seen.add(pid)
        todo += children.get(pid, [])
    return seen


def _processes_with(token: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if token.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def _run_hostile(sandbox, host, program: str, allowed=("forbidden",)):
    executor, baseline = sandbox
    token = f"escape-token-{os.getpid()}-{id(program)}"
    marker = host / "parent-ran-child-code"
    source = (
        program.replace("TOKEN", token)
        .replace("HOST", str(host))
        .replace("MARKER", str(marker))
        .replace("SECRET_NAME", "MATHJAX_VL_TEST_SECRET")
    )
    before = {p: p.read_bytes() for p in host.rglob("*") if p.is_file()}
    result = executor.run([source])[0]
    assert result.error_kind in allowed, (result.error_kind, result.error, result.output)
    assert result.png is None and not result.ok
    after = {p: p.read_bytes() for p in host.rglob("*") if p.is_file()}
    assert after == before  # nothing created, changed or deleted on the host
    assert not marker.exists()
    for place in ("/tmp", str(host), os.getcwd()):
        assert not any(token in name for name in os.listdir(place))
    assert _processes_with(token) == []
    assert _tree(executor) == baseline  # only the zygote(s): nothing the program started
    assert "PRIVATE-KEY-MATERIAL" not in result.output and SECRET not in result.output
    return result


# A pickle whose unpickling would run os.system in the parent, written to every descriptor the
# program can find: the caller's frame locals (the issue's `sys._getframe(2).f_locals`), then
# every fd number, then the figure is saved as if nothing happened.
PICKLE_THROUGH_RESULT_PIPE = (
    """
import os, pickle, sys
class Evil:
    def __reduce__(self):
        return (os.system, ("touch MARKER",))
payload = pickle.dumps(Evil())
frame = sys._getframe()
while frame is not None:
    for name, value in list(frame.f_locals.items()):
        if name in ("results", "result_fd", "write_fd") or hasattr(value, "send_bytes"):
            try:
                value.send(Evil()) if hasattr(value, "send") else os.write(value, payload)
            except Exception:
                pass
    frame = frame.f_back
for fd in range(3, 256):
    try:
        os.write(fd, len(payload).to_bytes(4, "big") + payload)
    except OSError:
        pass
"""
    + FIGURE
)

HOSTILE = {
    "pickle_through_result_pipe": PICKLE_THROUGH_RESULT_PIPE,
    "os_open_with_dir_fd": """
import os
d = os.open(".", os.O_RDONLY)
fd = os.open("../../../HOST/TOKEN-created", os.O_WRONLY | os.O_CREAT, dir_fd=d)
""",
    "os_open_host_dir_for_dir_fd": """
import os
d = os.open("HOST", os.O_RDONLY)
os.open("TOKEN-created", os.O_WRONLY | os.O_CREAT, dir_fd=d)
""",
    "os_remove_with_dir_fd": """
import os
d = os.open(".", os.O_RDONLY)
os.remove("../../../HOST/victim.txt", dir_fd=d)
""",
    "os_replace_with_dir_fd": """
import os
open("mine.txt", "w").write("x")
d = os.open(".", os.O_RDONLY)
os.replace("mine.txt", "../../../HOST/victim.txt", src_dir_fd=d, dst_dir_fd=d)
""",
    # a shell started behind the audit hook's back whose children would outlive the pool
    "posixsubprocess_fork_exec": """
import _posixsubprocess, os, sys
r, w = os.pipe()
script = b"(sleep 30; touch HOST/TOKEN-sh) & sleep 30 # TOKEN"
head = ([b"/bin/sh", b"-c", script], [b"/bin/sh"], True, (w,), None, None)
pipes = (-1, -1, -1, -1, -1, -1, r, w, True, True)
for tail in ((-1, None, None, -1, -1, None, False), (None, None, -1, -1, None)):
    try:
        _posixsubprocess.fork_exec(*head, *pipes, *tail)
        break
    except TypeError:
        continue
""",
    "disarm_guard_through_gc": """
import gc
for obj in gc.get_objects():
    if callable(getattr(obj, "hook", None)) or hasattr(obj, "allowed"):
        obj.allowed = None
open("HOST/TOKEN-after-disarm", "w").write("x")
""",
    # frames, tracebacks, patched os.path/builtins: nothing the hook uses is reachable
    "disarm_guard_through_frames_and_patches": """
import builtins, os, os.path, sys
builtins.isinstance = lambda *a: True
os.path.realpath = os.path.abspath = lambda p: os.getcwd() + "/x"
os.getcwd = lambda: "HOST"
try:
    open("/nonexistent/TOKEN", "w")
except BaseException as exc:
    pass
frame = sys._getframe()
while frame is not None:
    for value in list(frame.f_locals.values()):
        for attr in ("allowed", "hook", "refuse"):
            try:
                setattr(value, attr, None)
            except Exception:
                pass
    frame = frame.f_back
open("HOST/TOKEN-after-disarm", "w").write("x")
""",
    "daemon_thread_acts_after_return": """
import threading, time
def later():
    time.sleep(0.3)
    open("HOST/TOKEN-from-thread", "w").write("x")
threading.Thread(target=later, daemon=True).start()
"""
    + FIGURE,
    "read_etc_passwd": "print(open('/etc/passwd').read())\n" + FIGURE,
    "read_ssh_key": "print(open('HOST/home/.ssh/id_rsa').read())\n" + FIGURE,
    "read_home_ssh_dir": "import os\nprint(os.listdir(os.path.expanduser('~/.ssh')))\n",
    "environment_secrets": """
import os
print(os.environ.get("SECRET_NAME"), dict(os.environ))
print(open("/proc/self/environ").read())
""",
    "parent_environment_via_proc": "print(open('/proc/1/environ').read())\n",
    "fork_bomb_bounded": """
import os
for _ in range(64):
    if os.fork() == 0:
        import time
        time.sleep(30)
""",
    "ctypes_syscall": "import ctypes\nctypes.CDLL(None).syscall(57)\n",
    "signal_the_zygote": "import os, signal\nos.kill(1, signal.SIGKILL)\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_is_contained_and_forbidden(sandbox, host, name):
    _run_hostile(sandbox, host, HOSTILE[name])


def test_socket_to_loopback_reaches_nothing(sandbox, host):
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(3.0)
    received = []

    def accept():
        try:
            conn, _ = server.accept()
            received.append(conn.recv(100))
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    port = server.getsockname()[1]
    for program in (
        f"import socket\nsocket.create_connection(('127.0.0.1', {port})).sendall(b'TOKEN')\n",
        f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))\n",
    ):
        _run_hostile(sandbox, host, program)
    thread.join()
    server.close()
    assert received == []


@pytest.mark.parametrize(
    "program",
    [
        "block = bytearray(10 * 1024**3)\n",
        "import numpy as np\na = np.ones((40000, 40000))\n",
    ],
)
def test_ten_gigabyte_allocation_is_memory(sandbox, host, program):
    _run_hostile(sandbox, host, program, allowed=("memory",))


@pytest.mark.parametrize(
    "program",
    [
        "while True:\n    pass\n",
        # ignores its CPU timer: the CPU rlimit ends it
        "import signal\nsignal.signal(signal.SIGPROF, signal.SIG_IGN)\nwhile True:\n    pass\n",
    ],
)
def test_busy_loop_is_timeout(sandbox, host, program):
    result = _run_hostile(sandbox, host, program, allowed=("timeout",))
    assert "CPU" in result.error or "wall-clock" in result.error  # the first limit reached


def test_a_tampered_process_does_not_reach_the_next_program(sandbox, host):
    """After programs that patch the interpreter, the guard and matplotlib, the next programs
    run in clean processes: still refused, and a good figure renders as before."""
    executor, _ = sandbox
    clean = executor.run([FIGURE])[0]
    tamper = (
        "import builtins, os, matplotlib.pyplot as plt\n"
        "builtins.open = lambda *a, **k: None\nos.remove = lambda *a: None\n"
        "plt.savefig = lambda *a, **k: None\n" + FIGURE
    )
    results = executor.run([tamper, f"open({str(host / 'x')!r}, 'w')\n", FIGURE])
    assert not results[0].ok  # it broke its own open() and savefig
    assert results[1].error_kind == "forbidden"
    assert results[2].ok and results[2].png == clean.png
    assert not (host / "x").exists()


def test_codify_never_keeps_a_hostile_program(sandbox, host):
    executor, _ = sandbox
    reference = executor.run([FIGURE])[0].png
    marker = host / "parent-ran-child-code"
    program = PICKLE_THROUGH_RESULT_PIPE.replace("MARKER", str(marker))
    report = codify([("fig", reference)], lambda images: [program] * len(images), executor)
    assert [o.status for o in report.outcomes] == ["forbidden"]
    assert report.records == [] and not marker.exists()
