"""How a sandbox interpreter is started: inside Linux namespaces (bubblewrap or util-linux unshare).

Each sandbox is one interpreter (the zygote, sandbox_child) started in new user, PID, network,
mount, IPC and UTS namespaces. What it sees:

- read-only: the interpreter and its standard library, site-packages, the shared libraries,
  the fonts (/usr/share/fonts), `mathjax_vl/` itself and the PYTHONPATH entries (e.g. a test
  dir), each at its own path; nothing else of the host (no /etc, /home, /root, no repository
  checkout beyond `mathjax_vl/`);
- a private tmpfs /tmp (size-limited) for working dirs and matplotlib's config; /dev with only
  null, zero, random, urandom; its own /proc;
- no network (a new network namespace: only its own loopback), an empty environment apart from
  the few variables set here, no capabilities, no_new_privs.

`bwrap` (Debian package bubblewrap) is used when present, else `unshare`, whose mounts are then
made by `enter_private_root` (ctypes mount/pivot_root) before capabilities are dropped. If the
chosen tool cannot create the namespaces (a container without user namespaces, say), starting
fails with a message that says so; nothing ever falls back to running unisolated. Only
`unsafe_no_isolation` (CLI `--unsafe-no-isolation`) runs the zygote as a plain process, with a
warning.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from typing import Any

INSIDE_TMP = "/tmp"
WORK_ROOT = "/tmp/work"
MPL_CONFIG = "/tmp/mpl"
_DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
_SYSTEM_LIBS = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/local/lib", "/usr/share/fonts")
_TOP_LINKS = ("/lib", "/lib64", "/lib32", "/libx32")
UNSAFE_WARNING = (
    "WARNING: --unsafe-no-isolation: untrusted programs run WITHOUT namespaces (they can read "
    "your files and environment); only rlimits, seccomp and the audit hook remain"
)


class IsolationError(RuntimeError):
    """The requested isolation cannot be set up on this machine."""


@dataclasses.dataclass(frozen=True)
class Launch:
    """A ready-to-run zygote command and the paths the programs inside may read."""

    mode: str  # "bwrap" | "unshare" | "none"
    argv: list[str]
    env: dict[str, str]
    read_roots: tuple[str, ...]
    work_root: str


def package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _python_paths() -> list[str]:
    """Directories of the interpreter and the packages it imports (what the zygote needs)."""
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)]
    paths.append(os.path.dirname(os.path.realpath(sys.executable)))
    paths += [sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")]
    paths += [*site.getsitepackages(), site.getusersitepackages()]
    return paths


def read_roots(extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Existing, de-duplicated, outermost-first directories to expose read-only."""
    pkg = os.path.join(package_root(), "mathjax_vl")
    pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    candidates = [*_python_paths(), *_SYSTEM_LIBS, pkg, *extra]
    candidates += [p for p in pythonpath if os.path.abspath(p) != package_root()]
    real = sorted({os.path.realpath(p) for p in candidates if p and os.path.exists(p)})
    kept: list[str] = []
    for path in real:
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return tuple(kept)


def _inside_env(pythonpath: list[str]) -> dict[str, str]:
    env = {
        "PYTHONPATH": os.pathsep.join(pythonpath),
        "PYTHONHASHSEED": "0",  # same set order in every sandbox: outputs do not depend on it
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUTF8": "1",
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": MPL_CONFIG,
        "HOME": "/tmp/home",
    }
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


def _zygote_code(control_fd: int, enter: dict[str, Any] | None = None) -> str:
    prefix = ""
    if enter is not None:
        prefix = (
            "from mathjax_vl.datagen.isolation import enter_private_root; "
            f"enter_private_root({json.dumps(enter)!r}); "
        )
    return prefix + (
        f"from mathjax_vl.datagen.sandbox_child import zygote_main; zygote_main({control_fd})"
    )


def _pythonpath() -> list[str]:
    entries = [package_root()]
    for p in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if p and os.path.isdir(p) and os.path.realpath(p) not in map(os.path.realpath, entries):
            entries.append(os.path.realpath(p))
    return entries


def launch(mode: str, config: Any, control_fd: int, scratch: str) -> Launch:
    """The zygote command for `mode` ("auto", "bwrap", "unshare"; "none" = unisolated)."""
    roots = read_roots(tuple(config.extra_read_paths))
    pythonpath = _pythonpath()
    if mode == "none":
        env = dict(os.environ)
        env.update(_inside_env(pythonpath))
        env["MPLCONFIGDIR"] = os.path.join(scratch, "mpl")
        env["HOME"] = os.environ.get("HOME", scratch)
        work = os.path.join(scratch, "work")
        code = _zygote_code(control_fd)
        allowed = (*roots, work, env["MPLCONFIGDIR"], *_DEVICES)
        return Launch("none", [sys.executable, "-c", code], env, allowed, work)
    mode = resolve_mode(mode)
    inside_roots = (*roots, WORK_ROOT, MPL_CONFIG, *_DEVICES)
    env = _inside_env(pythonpath)
    if mode == "bwrap":
        argv = ["bwrap", *_bwrap_namespace_flags(), "--clearenv"]
        if os.geteuid() == 0:
            argv += ["--uid", "65534", "--gid", "65534"]
        for path in roots:
            argv += ["--ro-bind", path, path]
        argv += _bwrap_links(roots)
        argv += ["--dev", "/dev", "--proc", "/proc"]
        argv += ["--size", str(config.tmpfs_bytes), "--tmpfs", INSIDE_TMP, "--chdir", INSIDE_TMP]
        for key, value in env.items():
            argv += ["--setenv", key, value]
        argv += ["--", sys.executable, "-c", _zygote_code(control_fd)]
        return Launch("bwrap", argv, {}, inside_roots, WORK_ROOT)
    new_root = os.path.join(scratch, "root")
    os.makedirs(new_root, exist_ok=True)
    enter = {"root": new_root, "binds": list(roots), "tmpfs_bytes": config.tmpfs_bytes}
    argv = ["unshare", *_UNSHARE_FLAGS, sys.executable, "-c", _zygote_code(control_fd, enter)]
    return Launch("unshare", argv, env, inside_roots, WORK_ROOT)


def _bwrap_namespace_flags() -> list[str]:
    return [
        "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--disable-userns", "--cap-drop", "ALL", "--die-with-parent",
        "--new-session", "--as-pid-1",
    ]  # fmt: skip


_UNSHARE_FLAGS = [
    "--user", "--map-root-user", "--pid", "--fork", "--kill-child", "--net", "--ipc", "--uts",
    "--mount", "--propagation", "private",
]  # fmt: skip


def _bwrap_links(roots: tuple[str, ...]) -> list[str]:
    """/lib -> usr/lib style links of a merged-/usr system (the ELF loader lives behind them)."""
    out = []
    for link in _TOP_LINKS:
        if os.path.islink(link):
            out += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link) and link not in roots:
            out += ["--ro-bind", link, link]
    return out


@functools.cache
def resolve_mode(mode: str) -> str:
    """ "auto" -> "bwrap" or "unshare"; checks once per process that the namespaces work."""
    if mode == "auto":
        mode = "bwrap" if shutil.which("bwrap") else "unshare" if shutil.which("unshare") else ""
        if not mode:
            raise IsolationError(
                "sandbox: neither bwrap (apt-get install bubblewrap) nor unshare (util-linux) "
                "is installed; install one, or pass --unsafe-no-isolation to run untrusted "
                "programs without OS isolation"
            )
    if mode not in ("bwrap", "unshare"):
        raise IsolationError(f"sandbox isolation {mode!r}: expected auto, bwrap or unshare")
    if not shutil.which(mode):
        raise IsolationError(f"sandbox isolation {mode!r}: the {mode} program is not installed")
    if mode == "bwrap":
        probe = ["bwrap", *_bwrap_namespace_flags(), "--ro-bind", "/", "/", "--", "/bin/true"]
    else:
        probe = ["unshare", *_UNSHARE_FLAGS, "/bin/true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        done = subprocess.CompletedProcess(probe, 1, "", str(exc))
    if done.returncode != 0:
        raise IsolationError(
            f"sandbox: {mode} cannot create the user/PID/network/mount/IPC namespaces here "
            f"({done.stderr.strip() or f'exit status {done.returncode}'}); enable user "
            "namespaces (e.g. sysctl kernel.unprivileged_userns_clone=1, or run the container "
            "with --security-opt seccomp=unconfined), or pass --unsafe-no-isolation"
        )
    return mode


# --------------------------------------------------------------------------------------------
# The unshare path: mounts made from inside the new namespaces (we are root there, for now).
# --------------------------------------------------------------------------------------------

_MS = dict(rdonly=1, nosuid=2, nodev=4, noexec=8, remount=32, bind=4096, rec=16384)
_MS_PRIVATE, _MNT_DETACH = 1 << 18, 2
# statvfs flags that a read-only remount of a bind must keep (locked in a user namespace)
_KEEP = ((2, 2), (4, 4), (8, 8), (1024, 1024), (2048, 2048), (4096, 1 << 21))
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
_CAPSET = {"x86_64": 126, "aarch64": 91}


def enter_private_root(spec_json: str) -> None:
    """Build a root of read-only binds + tmpfs, pivot into it, drop every capability."""
    import ctypes
    import platform

    spec = json.loads(spec_json)
    libc = ctypes.CDLL(None, use_errno=True)
    machine = platform.machine().lower()

    def mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None):
        enc = lambda s: None if s is None else s.encode()
        if libc.mount(enc(src), enc(dst), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
            errno = ctypes.get_errno()
            raise IsolationError(f"sandbox (unshare): mount {src} -> {dst} failed: errno {errno}")

    root = spec["root"]
    mount(None, "/", None, _MS_PRIVATE | _MS["rec"])
    mount("tmpfs", root, "tmpfs", _MS["nosuid"] | _MS["nodev"], "mode=0755,size=1m")
    for src in spec["binds"]:
        dst = root + src
        os.makedirs(dst, exist_ok=True)
        mount(src, dst, None, _MS["bind"] | _MS["rec"])
        have = os.statvfs(src).f_flag
        keep = sum(ms for st, ms in _KEEP if have & st)
        mount(None, dst, None, _MS["remount"] | _MS["bind"] | _MS["rdonly"] | keep)
    for link in _TOP_LINKS:
        if os.path.islink(link):
            os.symlink(os.readlink(link), root + link)
    os.makedirs(root + "/dev")
    for device in _DEVICES:
        open(root + device, "w").close()
        mount(device, root + device, None, _MS["bind"])
    os.makedirs(root + "/proc")
    mount("proc", root + "/proc", "proc", _MS["nosuid"] | _MS["nodev"] | _MS["noexec"])
    os.makedirs(root + INSIDE_TMP)
    size = f"size={spec['tmpfs_bytes']},mode=1777"
    mount("tmpfs", root + INSIDE_TMP, "tmpfs", _MS["nosuid"] | _MS["nodev"], size)
    os.makedirs(root + "/.old")
    if libc.syscall(_PIVOT_ROOT[machine], root.encode(), (root + "/.old").encode()) != 0:
        raise IsolationError(f"sandbox (unshare): pivot_root failed: errno {ctypes.get_errno()}")
    os.chdir("/")
    if libc.umount2(b"/.old", _MNT_DETACH) != 0:
        raise IsolationError(f"sandbox (unshare): detaching the old root: {ctypes.get_errno()}")
    os.rmdir("/.old")
    mount(None, "/", None, _MS["remount"] | _MS["bind"] | _MS["rdonly"] | _MS["nosuid"] | 4)
    os.chdir(INSIDE_TMP)
    for cap in range(64):  # empty the bounding set: not even an exec'd root gets one back
        libc.prctl(24, cap, 0, 0, 0)
    libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    if libc.syscall(_CAPSET[machine], header, data) != 0:
        raise IsolationError(f"sandbox (unshare): dropping capabilities: {ctypes.get_errno()}")
