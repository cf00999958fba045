"""Errors of shard sets, with messages that name the file and say what to do next."""

from __future__ import annotations

import errno

from schemas.errors import B1kError


class ShardSetError(B1kError, RuntimeError):
    """A shard set or one of its files cannot be read."""


def verify_hint(location: str | None) -> str:
    target = location or "<shard set>"
    return (
        f"check the whole set with `b1k-shards verify {target}`; "
        "`b1k-train --skip-corrupt` skips corrupt shards (and counts them in the log)"
    )


class ShardCorruptError(ShardSetError):
    """One shard is missing, truncated, corrupt or does not match its manifest entry.

    Constructible from a single message (so it survives being re-raised by a DataLoader worker);
    `url`, `reason` and `samples_read` are kept for loggers and `CorruptShardLog`.
    """

    def __init__(
        self, message: str, *, url: str | None = None, reason: str | None = None, samples_read: int = 0
    ):
        super().__init__(message)
        self.url = url
        self.reason = reason if reason is not None else message
        self.samples_read = samples_read

    @classmethod
    def of(
        cls, url: str, reason: str, samples_read: int = 0, location: str | None = None
    ) -> ShardCorruptError:
        """The error for shard `url`: what is wrong, how far reading got, and the verify hint."""
        if location is None and not url.startswith("pipe:") and "/" in url:
            location = url.rsplit("/", 1)[0]
        where = f" (after {samples_read} samples)" if samples_read else ""
        message = f"corrupt shard {url}: {reason}{where}; {verify_hint(location)}"
        return cls(message, url=url, reason=reason, samples_read=samples_read)


class ShardNetworkError(ShardSetError):
    """A remote shard could not be fetched after the network retries (`shards.fetch`): a network
    problem, not a corrupt shard; nothing of it was used."""


_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space or choose another output folder, then run again",
    errno.EDQUOT: "the disk quota is used up: free space or choose another output folder, then run again",
    errno.EROFS: "the filesystem is read-only: choose a writable output folder",
    errno.EACCES: "permission denied: choose a folder you can write, or fix its permissions",
    errno.EPERM: "operation not permitted: choose a folder you can write, or fix its permissions",
}


def describe_os_error(exc: OSError) -> str:
    """One line for a failed file operation: the file, what the system said, and what to do."""
    where = f"{exc.filename}: " if exc.filename else ""
    hint = _OS_HINTS.get(exc.errno or 0)
    return f"{where}{exc.strerror or exc}" + (f"; {hint}" if hint else "")
