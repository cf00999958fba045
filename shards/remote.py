"""One way to open any file of a shard set, local or remote, with every remote read bounded in time.

`open_location(url)` gives a raw binary stream of a local path (a plain file), an http(s) URL (curl's
output) or a `pipe:` command (its output; the command is the user's, run by a shell). A remote stream
(`ProcessStream`) is read with a minimum transfer rate: a server or command that sends less than
`TransferLimits.min_rate` bytes/s averaged over `window_s` seconds (nothing at all, or a byte every
20 s) is cut off with a `TransferError`, so no read waits forever. Sizes are bounded by the callers
(`read_bounded` here; shards by their manifest size in `shards.fetch`), so a remote file costs at
most size / min_rate + window_s seconds per attempt.

The limits come from the environment (`TransferLimits.from_env`), so that every process of a run
(DataLoader workers included) applies the same ones: `B1K_MIN_RATE` (bytes/s, default 16384),
`B1K_RATE_WINDOW_S` (default 60) and `B1K_CONNECT_TIMEOUT_S` (default 30).
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import BinaryIO

MIN_RATE_ENV, WINDOW_ENV, CONNECT_ENV = "B1K_MIN_RATE", "B1K_RATE_WINDOW_S", "B1K_CONNECT_TIMEOUT_S"

# curl exit statuses: what each means, and whether a retry may cure it (a 404 is not: retrying cannot
# make the file appear).
CURL_EXITS = {
    6: ("cannot resolve the host", True),
    7: ("cannot connect", True),
    18: ("the transfer was cut short", True),
    22: ("the server answered with an HTTP error (e.g. 404 not found)", False),
    28: ("timed out", True),
    35: ("TLS handshake failed", True),
    52: ("the server sent nothing", True),
    56: ("the connection broke while receiving", True),
}


def location_kind(location: str) -> str:
    """`pipe` (a command), `http` (an http(s) URL) or `local` (a path)."""
    if location.startswith("pipe:"):
        return "pipe"
    if location.startswith(("http://", "https://")):
        return "http"
    return "local"


@dataclass(frozen=True)
class TransferLimits:
    """How slow a remote read may be: below `min_rate` bytes/s over a window of `window_s` seconds it
    is cut off; a connection must be made within `connect_s` seconds."""

    min_rate: float = 16 * 1024
    window_s: float = 60.0
    connect_s: float = 30.0

    @classmethod
    def from_env(cls) -> TransferLimits:
        def number(name: str, default: float) -> float:
            text = os.environ.get(name)
            try:
                value = float(text) if text else default
            except ValueError:
                raise ValueError(f"${name}: expected a number, got {text!r}") from None
            if not value > 0:
                raise ValueError(f"${name}: expected a number > 0, got {text!r}")
            return value

        default = cls()
        return cls(
            number(MIN_RATE_ENV, default.min_rate),
            number(WINDOW_ENV, default.window_s),
            number(CONNECT_ENV, default.connect_s),
        )


class TransferError(OSError):
    """A remote read failed: `reason` says how (one line), `transient` whether a retry may cure it."""

    def __init__(self, reason: str, transient: bool):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


class ProcessStream(io.RawIOBase):
    """The output of a download (curl) or a `pipe:` command as a raw stream, read with a rate floor.
    Reaching its end reports the process's failure (`TransferError`); closing it early stops the
    process (its whole process group: a `pipe:` command may be a pipeline)."""

    def __init__(self, url: str, limits: TransferLimits):
        super().__init__()
        self.url = url
        self.limits = limits
        self.kind = location_kind(url)
        self.process = subprocess.Popen(
            _command(url, limits),
            shell=self.kind == "pipe",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if self.kind == "http" else None,  # a command's own errors are shown
            start_new_session=True,
        )
        self.fd = self.process.stdout.fileno()
        self.poll = select.poll()
        self.poll.register(self.fd, select.POLLIN)
        self.received = 0
        self._window_start, self._window_bytes = time.monotonic(), 0
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._ended:
            return 0
        self._wait_for_data()
        n = os.readv(self.fd, [buffer])
        if n == 0:
            self._ended = True
            self._check_exit()
            return 0
        self.received += n
        self._window_bytes += n
        return n

    def _wait_for_data(self) -> None:
        """Block until the output has data or ends, checking the rate at each window's end."""
        while True:
            now = time.monotonic()
            window_end = self._window_start + self.limits.window_s
            if now >= window_end:
                self._check_rate(now)
                continue
            if self.poll.poll(max(1, int((window_end - now) * 1000))):
                return

    def _check_rate(self, now: float) -> None:
        elapsed = now - self._window_start
        if self._window_bytes < self.limits.min_rate * elapsed:
            raise TransferError(
                f"too slow: {self._window_bytes} bytes in {elapsed:.0f} s, below the minimum of "
                f"{self.limits.min_rate:g} bytes/s (${MIN_RATE_ENV}, ${WINDOW_ENV})",
                transient=True,
            )
        self._window_start, self._window_bytes = now, 0

    def _check_exit(self) -> None:
        status = self.process.wait()
        if status == 0:
            return
        if self.kind == "http":
            what, transient = CURL_EXITS.get(status, ("see `man curl`", False))
            reason = (
                f"curl exit {status}: {what}" if transient else f"download failed: curl exit {status}, {what}"
            )
            raise TransferError(reason, transient)
        raise TransferError(f"the pipe: command failed (exit {status})", transient=True)

    def close(self) -> None:
        if self.closed:
            return
        if self.process.poll() is None:  # stopped early (or failed): the process has no reader left
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.stdout.close()
        self.process.wait()
        super().close()


def _command(url: str, limits: TransferLimits) -> list[str] | str:
    if location_kind(url) == "pipe":
        return url[len("pipe:") :]
    # No retries of curl's own (ours are logged and counted: `shards.fetch`); redirects stay on http(s).
    return [
        "curl", "--fail", "--silent", "--no-buffer", "--location", "--proto", "=http,https", "--proto-redir", "=http,https",
        "--connect-timeout", f"{limits.connect_s:g}", "--url", url,
    ]  # fmt: skip


def open_location(url: str, limits: TransferLimits | None = None) -> BinaryIO:
    """A raw binary stream of a local path (unbuffered: readers buffer it themselves), an http(s) URL or
    a `pipe:` command (`ProcessStream`, rate-bounded by `limits`, else those of the environment)."""
    if location_kind(url) == "local":
        return open(url, "rb", buffering=0)
    return ProcessStream(url, limits or TransferLimits.from_env())


def read_bounded(url: str, most: int, what: str, limits: TransferLimits | None = None) -> bytes:
    """The whole file at `url`, refused (`TransferError`, not transient) when it holds more than `most`
    bytes: at most `most` + 1 bytes are read, whatever the server sends or claims."""
    with open_location(url, limits) as stream:
        data = bytearray()
        while len(data) <= most:
            block = stream.read(min(1 << 20, most + 1 - len(data)))
            if not block:
                return bytes(data)
            data += block
    raise TransferError(f"more than {most} bytes, the most a {what} may have", transient=False)
