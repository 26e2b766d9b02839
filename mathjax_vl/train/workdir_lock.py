"""One trainer per run directory: an exclusive `flock` on <workdir>/.lock.

The kernel drops a flock when its holder dies (SIGKILL, OOM, node reboot of a local disk), so a
crashed run never leaves a stale lock to clean by hand, unlike a pid file. The file holds the
holder's host, pid and start time, which a refused second trainer names. Only process 0 of a
multi-process run takes it (all processes of one run share the directory).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from mathjax_vl.errors import UserError

LOCK_NAME = ".lock"


class WorkdirLockedError(UserError):
    """Another live trainer holds the run directory."""


class WorkdirLock:
    """`with WorkdirLock(workdir):` holds the lock for the block (or until the process dies)."""

    def __init__(self, workdir: str | os.PathLike):
        self.path = Path(workdir).absolute() / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorkdirLockedError(
                f"run directory {self.path.parent} is in use by another trainer "
                f"(host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, since "
                f"{holder.get('since', '?')}; lock file {self.path}); wait for it to finish or "
                "use another --workdir"
            ) from None
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no holder named after a clean exit
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        raw = os.pread(fd, 4096, 0)
        return json.loads(raw.decode()) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
