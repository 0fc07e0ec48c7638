"""Advisory file locks between longchat processes (one writer per memory, one chat per session)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class Lock:
    """A lock file (created if missing) and a flock on it that is never waited for; the kernel
    releases it when the process ends, however it ends (kill -9 included)."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def take(self, exclusive: bool = True) -> bool:
        """Take (or change to) an exclusive or shared lock; False if another process prevents it."""
        try:
            fcntl.flock(self.fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def write_pid(self) -> None:
        """Say who holds it (read back by `holder`)."""
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def holder(self) -> str:
        return os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
