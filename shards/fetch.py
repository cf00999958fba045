"""Fetch a remote shard (http(s), `pipe:`) into a local file, verified against its manifest entry
before a byte of it is used, with network failures retried.

A shard set from elsewhere is untrusted: its samples must not reach a model, nor its bytes a merged
set, until they are the bytes the manifest describes. A local shard is hashed in place
(`shards.scan.local_file_problem`); a remote one is downloaded here:

- into a temporary file in the cache folder (`$B1K_SHARD_CACHE`, else the system's temp dir), at most
  the manifest's size plus one byte: a server that sends more is refused at that byte, whatever it
  claims, and nothing is read whole into memory;
- hashed as it arrives, then compared with the manifest's size and sha256 (`ShardCorruptError`);
- a network failure (curl's transient exits: no connection, timeout, transfer cut short; a transfer
  slower than the minimum rate, `shards.remote`; or a failed `pipe:` command) is retried
  `RetryPolicy.attempts` times with exponential backoff, each retry logged, and reported as
  `ShardNetworkError` (not as a corrupt shard) when they are used up.

The caller reads the file and removes it (`fetched`, a context manager). Manifests and stats sidecars
are read whole with the same bounds and retries (`fetch_bytes`): at most a given size, at the
minimum rate.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from schemas.manifest import FileEntry
from shards.errors import ShardCorruptError, ShardNetworkError
from shards.remote import TransferError, read_bounded
from shards.scan import open_stream, size_problem

log = logging.getLogger(__name__)

CACHE_ENV = "B1K_SHARD_CACHE"
BLOCK = 1 << 22


@dataclass(frozen=True)
class RetryPolicy:
    """How often a network failure is retried: `attempts` in all, waiting `first_delay` seconds
    before the second and `factor` times longer before each next one."""

    attempts: int = 4
    first_delay: float = 1.0
    factor: float = 2.0

    def delays(self) -> Iterator[float]:
        delay = self.first_delay
        for _ in range(self.attempts - 1):
            yield delay
            delay *= self.factor


DEFAULT_RETRY = RetryPolicy()


def cache_dir() -> Path:
    folder = Path(os.environ.get(CACHE_ENV) or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class _NetworkFailure(Exception):
    """One attempt failed in a way a retry may cure."""


def _failure_of(exc: BaseException) -> str | None:
    """What a network failure was, or None if `exc` is not one a retry may cure (a 404 is not:
    retrying cannot make the file appear)."""
    return exc.reason if isinstance(exc, TransferError) and exc.transient else None


def _download_once(url: str, entry: FileEntry, path: Path) -> None:
    """One attempt: `url` into `path`, at most the manifest's size + 1 bytes, then size and sha256."""
    limit = int(entry.bytes)
    digest = hashlib.sha256()
    received = 0
    stream = open_stream(url)
    try:
        with open(path, "wb") as f:
            while received <= limit:
                block = stream.read(min(BLOCK, limit + 1 - received))
                if not block:
                    break
                received += len(block)
                digest.update(block)
                f.write(block)
    except OSError as exc:
        if (what := _failure_of(exc)) is not None:
            raise _NetworkFailure(what) from exc
        raise ShardCorruptError.of(url, f"cannot read ({exc})") from exc
    finally:
        with contextlib.suppress(Exception):
            stream.close()
    if received > limit:
        raise ShardCorruptError.of(
            url, f"larger than its manifest entry says ({limit} bytes): refused unread"
        )
    if received != limit:
        raise ShardCorruptError.of(url, size_problem(received, limit))
    if digest.hexdigest() != entry.sha256:
        raise ShardCorruptError.of(
            url, f"sha256 mismatch (manifest {entry.sha256[:12]}…, download {digest.hexdigest()[:12]}…)"
        )


def with_retries[T](url: str, attempt: Callable[[], T], retry: RetryPolicy) -> T:
    """`attempt()`, tried again after each `_NetworkFailure` as `retry` says (each retry logged), then
    a `ShardNetworkError` naming `url`."""
    delays = retry.delays()
    tried = 1
    while True:
        try:
            return attempt()
        except _NetworkFailure as failure:
            delay = next(delays, None)
            if delay is None:
                raise ShardNetworkError(
                    f"network error reading {url}: {failure} ({retry.attempts} attempts); check the "
                    "connection or the server, then run again (--resume continues where a run stopped)"
                ) from failure.__cause__
            log.warning(
                "network error reading %s: %s; retry %d of %d in %.1f s",
                url, failure, tried, retry.attempts - 1, delay,
            )  # fmt: skip
            time.sleep(delay)
            tried += 1


@contextlib.contextmanager
def fetched(url: str, entry: FileEntry, retry: RetryPolicy = DEFAULT_RETRY) -> Iterator[Path]:
    """A local file holding the verified bytes of the remote shard `url` (manifest entry `entry`),
    removed when the block ends."""
    fd, name = tempfile.mkstemp(prefix="b1k-shard-", suffix=".tar", dir=cache_dir())
    os.close(fd)
    path = Path(name)
    try:
        with_retries(url, lambda: _download_once(url, entry, path), retry)
        yield path
    finally:
        path.unlink(missing_ok=True)


def fetch_bytes(url: str, most: int, what: str, retry: RetryPolicy = DEFAULT_RETRY) -> bytes:
    """The whole file at `url` (a local path, an http(s) URL or a `pipe:` command), at most `most`
    bytes (a `TransferError` beyond), read at the minimum rate, network failures retried like a shard's."""

    def attempt() -> bytes:
        try:
            return read_bounded(url, most, what)
        except TransferError as exc:
            if exc.transient:
                raise _NetworkFailure(exc.reason) from exc
            raise

    return with_retries(url, attempt, retry)
