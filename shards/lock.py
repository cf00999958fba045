"""An advisory lock on an output folder: two runs never write one folder at once.

`b1k-preprocess`, `b1k-shards merge` and `b1k-train` take it on their output folder for the whole
run (`with FolderLock(folder, "b1k-preprocess"):`). The lock is `fcntl.flock` on `<folder>/.b1k-lock`,
which also records who holds it (tool, pid, host, command, start time):

- a second run fails at once with `FolderLockedError` naming the holder (a requeued cluster job
  that starts while the first still runs no longer deletes its shards);
- the kernel releases a flock when its process dies, however it dies, so a lock left by a killed run
  is stale by construction: the next run takes it over and logs whose it was.

flock works across NFS clients on Linux (emulated with POSIX locks since 2.6.12); on a filesystem
without locks, acquiring fails with a clear error rather than going ahead unguarded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import shlex
import socket
import stat
import sys
from pathlib import Path

from schemas.errors import B1kError

log = logging.getLogger(__name__)

LOCK_NAME = ".b1k-lock"


class FolderLockedError(B1kError, RuntimeError):
    """The folder is locked by another run (the message names it), or cannot be locked at all."""


def _holder_record(tool: str) -> dict:
    return {
        "tool": tool,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": shlex.join(sys.argv),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def describe_holder(record: dict | None) -> str:
    if not record:
        return "another run (it has not said who it is yet)"
    return (
        f"{record.get('tool', '?')} (pid {record.get('pid', '?')} on {record.get('host', '?')}, "
        f"started {record.get('started', '?')}: {record.get('command', '?')})"
    )


def _read_record(fd: int) -> dict | None:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        record = json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


class FolderLock:
    """`with FolderLock(folder, tool):` holds `folder`'s lock for the block (creating the folder)."""

    def __init__(self, folder: str | Path, tool: str):
        self.folder = Path(folder)
        self.tool = tool
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        fd = self._locked_fd()
        previous = _read_record(fd)
        if previous:  # its process is gone (the kernel released its lock): a killed or crashed run
            log.warning(
                "%s: taking over the lock of %s, which no longer runs", self.folder, describe_holder(previous)
            )
        record = json.dumps(_holder_record(self.tool)).encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        self._fd = fd
        return self

    def _locked_fd(self) -> int:
        """A descriptor of the lock file, flocked. A holder removes the file as it releases: a lock won
        on a file that is no longer at the path is worthless, so then try again on the new one."""
        for _ in range(100):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = describe_holder(_read_record(fd))
                os.close(fd)
                raise FolderLockedError(
                    f"{self.folder} is in use by {holder}; wait for it to end or stop it, or choose another folder"
                ) from None
            except OSError as exc:
                os.close(fd)
                raise FolderLockedError(f"{self.folder}: this filesystem cannot lock files ({exc})") from None
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)
        raise FolderLockedError(
            f"{self.folder}: the lock file keeps changing under us; is another run looping?"
        )

    def _open(self) -> int:
        """The lock file, opened without following a symlink (one planted there would make the lock
        truncate the file it points to) and without blocking (a FIFO would wait for a writer); anything
        but a regular file is refused, named."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            if os.path.islink(self.path):
                raise FolderLockedError(
                    f"{self.folder}: its lock file {LOCK_NAME} is a symbolic link, not written through; "
                    "remove it and run again"
                ) from None
            raise FolderLockedError(
                f"{self.folder}: cannot create the output folder's lock ({exc})"
            ) from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(mode)
                else "a socket"
                if stat.S_ISSOCK(mode)
                else "not a regular file"
            )
            raise FolderLockedError(
                f"{self.folder}: its lock file {LOCK_NAME} is {kind}, not a file this tool wrote; remove it and run again"
            )
        return fd

    def release(self) -> None:
        """Remove the lock file and let go (the file goes first: a waiting run then finds no record)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):  # a read-only folder now: the lock still goes with the fd
            if os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(self._fd).st_ino:
                self.path.unlink()  # only our own file (a folder swapped in may hold another's)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()
