"""Read one shard as a stream, wherever it lives, and account for every byte.

`ShardScan` yields the raw samples of a tar shard in file order (webdataset's grouping:
`__key__`, `__url__`, and one entry per member suffix), hashing and counting the bytes as they
go by, and reads the stream to its end so that `bytes` and `sha256` describe the whole file.
Any read failure (missing file, truncated or garbled tar, failed download) raises
`ShardCorruptError` naming the shard; `end_problems` compares a finished scan with the shard's
manifest entry (size, sha256, sample count). One pass, no temporary copy: used by
`b1k-shards verify`, by merge when it copies remote shards, and by the training stream.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from schemas.manifest import FileEntry, ShardEntry
from shards.errors import ShardCorruptError
from shards.remote import TransferError, location_kind, open_location
from shards.tar import (
    READ_BUFFER,
    HashingReader,
    MappedReader,
    buffered_reader,
    iter_members,
    iter_sample_members,
)

__all__ = ["ShardScan", "digest_file", "end_problems", "is_local", "location_kind", "open_stream"]


def is_local(url: str) -> bool:
    return location_kind(url) == "local"


def open_stream(url: str) -> BinaryIO:
    """A raw binary stream of a local path, an http(s) URL or a `pipe:` command, remote ones read
    with a minimum transfer rate (`shards.remote.open_location`)."""
    return open_location(url)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "missing (no such file)"
    if isinstance(exc, TransferError):  # a download's or command's failure, its exit status read
        return exc.reason
    text = str(exc.args[0]) if getattr(exc, "args", None) else str(exc)
    if isinstance(exc, tarfile.ReadError):
        text = str(exc)
        if "unexpected end of data" in text or "empty header" in text or "truncated" in text:
            return f"truncated or not a tar file ({text})"
        return f"not a readable tar file ({text})"
    return f"{type(exc).__name__}: {text}"


class ShardScan:
    """Iterate once over the samples of the shard at `url`; afterwards `samples`, `bytes` and `sha256`
    describe what was read (`sha256` is None when `digest=False`). `check_headers=False` skips the
    tar header checksums, for a file whose sha256 has been checked already (unchanged since).
    `zero_copy=True` reads a local file through a memory map (`MappedReader`): its members are then
    read-only memoryviews of the map, valid for as long as they are held (bytes otherwise)."""

    def __init__(self, url: str, *, digest: bool = True, check_headers: bool = True, zero_copy: bool = False):
        self.url = url
        self.digest = digest
        self.check_headers = check_headers
        self.zero_copy = zero_copy
        self.samples = 0
        self.bytes = 0
        self.sha256: str | None = None
        self.complete = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.zero_copy and is_local(self.url):
            yield from self._mapped()
            return
        try:
            stream = open_stream(self.url)
        except Exception as exc:
            raise ShardCorruptError.of(self.url, _describe(exc)) from exc
        raw = HashingReader(stream, self.digest)
        try:
            yield from self._samples(buffered_reader(raw))
            raw.drain()  # to its end: a download's or command's failure is reported there
        except ShardCorruptError:
            raise
        except (OSError, EOFError, ValueError, tarfile.TarError) as exc:
            raise ShardCorruptError.of(self.url, _describe(exc), self.samples) from exc
        finally:
            self.bytes = raw.bytes
            with contextlib.suppress(Exception):  # already reported, or the consumer stopped early
                stream.close()
        self.sha256 = raw.hexdigest()
        self.complete = True

    def _mapped(self) -> Iterator[dict[str, Any]]:
        try:
            reader = MappedReader(self.url)
            self.bytes = reader.size
            yield from self._samples(reader)
            self.sha256 = reader.hexdigest() if self.digest else None
        except ShardCorruptError:
            raise
        except (OSError, EOFError, ValueError, tarfile.TarError) as exc:
            raise ShardCorruptError.of(self.url, _describe(exc), self.samples) from exc
        self.complete = True

    def _samples(self, reader: BinaryIO | MappedReader) -> Iterator[dict[str, Any]]:
        for key, members in iter_sample_members(iter_members(reader, self.check_headers)):
            if key is None:  # webdataset skips members without a <key>.<suffix> name
                continue
            sample: dict[str, Any] = {"__key__": key, "__url__": self.url}
            for suffix, member in members:
                suffix = suffix.lower()
                if suffix in sample:
                    raise ValueError(f"sample {key}: member {suffix} appears twice")
                sample[suffix] = member.data
            self.samples += 1
            yield sample


def size_problem(size: int, expected: int) -> str:
    return f"size {size} bytes, manifest says {expected}" + (" (truncated)" if size < expected else "")


def end_problems(scan: ShardScan, entry: ShardEntry) -> list[str]:
    """What differs between a finished scan and the shard's manifest entry."""
    problems = []
    if scan.bytes != entry.bytes:
        problems.append(size_problem(scan.bytes, entry.bytes))
    if scan.sha256 is not None and scan.sha256 != entry.sha256:
        problems.append(f"sha256 mismatch (manifest {entry.sha256[:12]}…, file {scan.sha256[:12]}…)")
    if scan.samples != entry.samples:
        problems.append(f"{scan.samples} samples, manifest says {entry.samples}")
    return problems


def local_size_problem(url: str, entry: FileEntry) -> str | None:
    """For a local shard, a missing file or a wrong size, found before reading a byte."""
    if not is_local(url):
        return None
    try:
        size = os.stat(url).st_size
    except FileNotFoundError:
        return "missing (no such file)"
    except OSError as exc:
        return f"cannot stat ({exc})"
    if size != entry.bytes:
        return size_problem(size, entry.bytes)
    return None


def local_file_problem(url: str, entry: FileEntry) -> str | None:
    """For a local file, what differs from its manifest entry (missing, size, sha256), found by hashing
    the whole file before a byte of it is used; None when it is the file the manifest describes."""
    if problem := local_size_problem(url, entry):
        return problem
    try:
        with open(url, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()  # releases the GIL while it hashes
    except OSError as exc:
        return f"cannot read ({exc})"
    if digest != entry.sha256:
        return f"sha256 mismatch (manifest {entry.sha256[:12]}…, file {digest[:12]}…)"
    return None


def digest_file(path: str | Path, block: int = READ_BUFFER) -> tuple[int, str]:
    """(size, sha256) of a file at a local path, URL or `pipe:` command, read once as a stream."""
    try:
        stream = open_stream(str(path))
    except Exception as exc:
        raise ShardCorruptError.of(str(path), _describe(exc)) from exc
    reader = HashingReader(stream)
    try:
        reader.drain(block)
    except OSError as exc:
        raise ShardCorruptError.of(str(path), _describe(exc)) from exc
    finally:
        with contextlib.suppress(Exception):
            stream.close()
    return reader.bytes, str(reader.hexdigest())
