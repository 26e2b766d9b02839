"""Restrictions a program's process puts on itself before the program runs, for good.

Three layers, applied in a freshly forked child (sandbox_child) that exits when its one program
ends, on top of the namespaces it already lives in (isolation.py):

- rlimits: CPU seconds (a backstop to the SIGPROF timer), address space, file size, open files,
  process count, no core dumps;
- a seccomp filter (kernel-enforced, cannot be undone): creating a process (fork, vfork, clone
  without CLONE_THREAD), exec, sockets, ptrace, mount/unshare/setns, bpf, keyctl, perf and
  userfaultfd KILL the whole process (the parent sees SIGSYS, reported as `forbidden`); clone3 is
  answered ENOSYS so that thread creation falls back to clone;
- a Python audit hook that is never disarmed: writes outside the working dir, reads outside the
  read-only roots, directory descriptors outside the working dir, any `dir_fd` argument, chdir
  out, subprocess/os.system/exec/spawn/fork/kill, sockets, ctypes, setrlimit, new audit hooks,
  gc.get_objects/get_referrers/get_referents, sys.settrace/setprofile, code object creation.
  A refused action ENDS the process on the spot (exit code FORBIDDEN_EXIT after a `forbidden`
  report), so a program cannot catch the error and carry on.

The hook's state lives only in a closure over immutable values and builtins captured at install
time, so patching modules (os.path, builtins) cannot change what it checks; it never calls code
of the program (only exact str/bytes/int/pathlib paths are accepted), so no frame of the hook is
ever visible to it, and `gc` is refused, so the closure cannot be found. It is a detector with
teeth, not the boundary: the boundary is the namespaces + seccomp + rlimits, which hold even if
the hook were bypassed.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import stat
import struct
import sys
from collections.abc import Callable
from typing import Any

FORBIDDEN_EXIT = 86  # exit status of a process whose program attempted a refused action

_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _PR_SET_PDEATHSIG, _PR_SET_DUMPABLE = 38, 22, 1, 4
_SECCOMP_MODE_FILTER = 2
_RET_KILL_PROCESS, _RET_ERRNO, _RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
_ENOSYS, _CLONE_THREAD = 38, 0x00010000
# (audit arch, syscall numbers) per machine; only the calls below are filtered.
_SYSCALLS = {
    "x86_64": (
        0xC000003E,
        dict(
            clone=56, clone3=435, fork=57, vfork=58, execve=59, execveat=322, socket=41,
            socketpair=53, ptrace=101, process_vm_readv=310, process_vm_writev=311, unshare=272,
            setns=308, mount=165, keyctl=250, bpf=321, userfaultfd=323, perf_event_open=298,
        ),
    ),
    "aarch64": (
        0xC00000B7,
        dict(
            clone=220, clone3=435, execve=221, execveat=281, socket=198, socketpair=199,
            ptrace=117, process_vm_readv=270, process_vm_writev=271, unshare=97, setns=268,
            mount=40, keyctl=219, bpf=280, userfaultfd=282, perf_event_open=241,
        ),
    ),
}  # fmt: skip


class SandboxUnavailable(RuntimeError):
    """This machine cannot provide a restriction the sandbox relies on."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def seccomp_program() -> bytes:
    """The BPF filter as bytes (built once in the zygote; installing it is one prctl)."""
    machine = platform.machine().lower()
    machine = "aarch64" if machine == "arm64" else machine
    if machine not in _SYSCALLS:
        raise SandboxUnavailable(f"no seccomp filter for machine {machine!r}")
    arch, nr = _SYSCALLS[machine]
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    insns: list[tuple[int, int, int, int]] = [(ld, 0, 0, 4), (jeq, 1, 0, arch)]
    insns += [(ret, 0, 0, _RET_KILL_PROCESS), (ld, 0, 0, 0)]  # wrong arch: kill; A = nr
    if machine == "x86_64":  # the x32 ABI (nr | 0x40000000) bypasses per-number rules
        insns += [(jge, 0, 1, 0x40000000), (ret, 0, 0, _RET_KILL_PROCESS)]
    for name, number in nr.items():
        if name not in ("clone", "clone3"):
            insns += [(jeq, 0, 1, number), (ret, 0, 0, _RET_KILL_PROCESS)]
    insns += [(jeq, 0, 1, nr["clone3"]), (ret, 0, 0, _RET_ERRNO | _ENOSYS)]
    insns += [(jeq, 0, 3, nr["clone"]), (ld, 0, 0, 16)]  # A = low word of clone's flags
    insns += [(jset, 1, 0, _CLONE_THREAD), (ret, 0, 0, _RET_KILL_PROCESS)]
    insns += [(ret, 0, 0, _RET_ALLOW)]
    return b"".join(struct.pack("HBBI", *insn) for insn in insns)


def install_seccomp(program: bytes) -> None:
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SandboxUnavailable(f"prctl(NO_NEW_PRIVS) failed: errno {ctypes.get_errno()}")

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    prog = SockFprog(len(program) // 8, program)
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise SandboxUnavailable(
            f"installing the seccomp filter failed: errno {ctypes.get_errno()}"
        )


def die_with_parent() -> None:
    """SIGKILL this process when the process that forked it dies (no orphan outlives it)."""
    _libc().prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)


def undumpable() -> None:
    """Nothing of the same user (e.g. a program in a sibling process) may ptrace or read us."""
    _libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def set_limits(config: Any, cpu_seconds: float | None) -> None:
    """rlimits for this process; `cpu_seconds` (a program's) also caps CPU and processes."""
    limit = lambda which, value: resource.setrlimit(which, (value, value))
    limit(resource.RLIMIT_CORE, 0)
    limit(resource.RLIMIT_FSIZE, config.max_image_bytes + 1)
    limit(resource.RLIMIT_AS, config.memory_limit_bytes)
    if cpu_seconds is not None:
        soft = (
            int(cpu_seconds) + 2
        )  # the SIGPROF timer fires first; this ends a program ignoring it
        resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))
        limit(resource.RLIMIT_NPROC, config.max_processes)
        limit(resource.RLIMIT_NOFILE, config.max_open_files)


def cpu_rlimit_seconds(timeout_s: float) -> int:
    return int(timeout_s) + 2


# audit event -> (indices of path arguments that must be inside the working dir, dir_fd indices)
_WRITE_EVENTS = {
    "os.remove": ((0,), (1,)),
    "os.rmdir": ((0,), (1,)),
    "os.mkdir": ((0,), (2,)),
    "os.rename": ((0, 1), (2, 3)),
    "os.replace": ((0, 1), (2, 3)),
    "os.link": ((0, 1), (2, 3)),
    "os.symlink": ((0, 1), (2,)),
    "os.truncate": ((0,), ()),
    "os.chmod": ((0,), (2,)),
    "os.chown": ((0,), (3,)),
    "os.utime": ((0,), (3,)),
    "os.chflags": ((0,), ()),
    "os.lchown": ((0,), ()),
    "os.setxattr": ((0,), ()),
    "os.removexattr": ((0,), ()),
    "os.chdir": ((0,), ()),
    "shutil.rmtree": ((0,), ()),
    "shutil.move": ((0, 1), ()),
    "shutil.copyfile": ((1,), ()),
    "shutil.copytree": ((1,), ()),
}
_READ_EVENTS = {"os.listdir": 0, "os.scandir": 0, "glob.glob": 0, "os.listxattr": 0}
_REFUSED = (
    "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "os.kill", "os.killpg", "os.putenv", "os.unsetenv", "os.startfile", "pty.spawn", "socket.",
    "ctypes.", "resource.setrlimit", "resource.prlimit", "sys.addaudithook", "webbrowser.open",
    "urllib.Request", "ftplib.", "smtplib.", "http.client.", "signal.pthread_kill", "gc.get_",
    "sys.settrace", "sys.setprofile", "sys._current_frames", "sys._current_exceptions",
    "code.__new__", "cpython.remote_debugger_script",
)  # fmt: skip
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
FORBIDDEN_TAG = b"\0forbidden\0"  # a refusal report: TAG + message + b"\0" + output tail


def make_hook(
    workdir: str, read_roots: tuple[str, ...], result_fd: int, output: Any, tail: int
) -> Callable[[str, tuple], None]:
    """The audit hook for a process whose program may only write under `workdir`.

    A refusal writes FORBIDDEN_TAG + message + output tail to `result_fd` and exits with
    FORBIDDEN_EXIT. Everything the hook calls is bound here (builtins, C functions), and it only
    inspects exact str/bytes/int/pathlib values, so no code of the program runs inside the
    hook (where it could see the hook's frame) and patching modules or builtins changes nothing.
    """
    import pathlib

    getcwd, stat_of, is_dir, write, exit_now = os.getcwd, os.stat, stat.S_ISDIR, os.write, os._exit
    str_, bytes_, int_, type_, len_, repr_ = str, bytes, int, type, len, repr
    concat, encode_text, decode_bytes = str.__add__, str.encode, bytes.decode
    startswith, split, getvalue = str.startswith, str.split, type(output).getvalue
    path_types = (pathlib.PosixPath, pathlib.PurePosixPath)
    cached_str = pathlib.PurePath.__dict__["_str"].__get__  # the slot __fspath__ returns
    write_events, read_events, refused = dict(_WRITE_EVENTS), dict(_READ_EVENTS), tuple(_REFUSED)
    write_flags, default_fds, tag, forbidden_exit = (
        _WRITE_FLAGS,
        (-1, -100),
        FORBIDDEN_TAG,
        FORBIDDEN_EXIT,
    )
    workdir = "/" + workdir.strip("/")
    roots = tuple("/" + r.strip("/") for r in (*read_roots, workdir))
    workdirs = (workdir,)

    def refuse(message: str) -> None:
        try:
            text = getvalue(output)[-tail:]
            data = tag + encode_text(message, "utf-8", "replace") + b"\0"
            data += encode_text(text, "utf-8", "replace")
            while data:
                data = data[write(result_fd, data) :]
        finally:
            exit_now(forbidden_exit)

    def absolute(path: Any) -> str:
        """The normalized absolute path, or refuse; symlinks are not followed (none can point
        out of the working dir: making one is checked, and the rest of the tree is read-only)."""
        for t in path_types:  # the string the audited call already got from __fspath__
            if type_(path) is t:
                try:
                    path = cached_str(path)
                except AttributeError:
                    refuse("a pathlib path whose string was never computed")
                break
        if type_(path) is bytes_:
            path = decode_bytes(path, "utf-8", "surrogateescape")
        if type_(path) is not str_:
            refuse("a path that is not a str, bytes or pathlib path")
        p = path if startswith(path, "/") else concat(concat(getcwd(), "/"), path)
        parts: list = []
        for part in split(p, "/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part != "" and part != ".":
                parts.append(part)
        return "/" + "/".join(parts)

    def under(path: str, tops: tuple) -> bool:
        for top in tops:
            if path == top or startswith(path, concat(top, "/")):
                return True
        return False

    def hook(event: str, args: tuple) -> None:
        if type_(event) is not str_ or type_(args) is not tuple:
            refuse("an audit event of an unexpected type")
        if event == "open":
            path, mode, flags = (*args, None, None)[:3]
            if type_(path) is int_ or path is None:
                return  # wrapping an already-open descriptor: its own open was checked
            where = absolute(path)
            if mode is None:
                writes = type_(flags) is not int_ or flags & write_flags
            elif type_(mode) is str_:
                writes = "w" in mode or "a" in mode or "x" in mode or "+" in mode
            else:
                writes = True
            if writes and not under(where, workdirs):
                refuse(f"open {repr_(where)} for writing outside the working dir")
            if not under(where, roots):
                refuse(f"open {repr_(where)}: outside the files the sandbox may read")
            if mode is None and not under(where, workdirs):
                try:  # os.open of a directory outside: the dir_fd for *at() calls
                    directory = is_dir(stat_of(where).st_mode)
                except OSError:
                    directory = False
                if directory:
                    refuse(f"os.open of the directory {repr_(where)} outside the working dir")
            return
        if event in write_events:
            paths, dir_fds = write_events[event]
            for i in dir_fds:
                if i < len_(args) and args[i] is not None:
                    if type_(args[i]) is not int_ or args[i] not in default_fds:
                        refuse(f"{event} with dir_fd={repr_(args[i])}")
            for i in paths:
                if i < len_(args) and args[i] is not None:
                    if type_(args[i]) is int_ or not under(absolute(args[i]), workdirs):
                        refuse(f"{event} {repr_(args[i])} outside the working dir")
            return
        if event in read_events:
            i = read_events[event]
            if i < len_(args) and args[i] is not None:
                if type_(args[i]) is int_ or not under(absolute(args[i]), roots):
                    refuse(f"{event} {repr_(args[i])}: outside the files the sandbox may read")
            return
        if event == "object.__setattr__" and len_(args) > 1:
            if type_(args[1]) is str_ and args[1] == "__code__":
                refuse("replacing a function's code is not allowed")
        if startswith(event, refused):
            refuse(f"{event} is not allowed")

    return hook


def install_hook(hook: Callable[[str, tuple], None]) -> None:
    sys.addaudithook(hook)
