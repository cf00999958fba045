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
import io
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from webdataset.gopen import gopen as wds_gopen
from webdataset.tariterators import base_plus_ext

from shards.errors import ShardCorruptError

_BLOCK = 1 << 20


class _DigestReader:
    """A read-only stream that hashes and counts what is read through it."""

    def __init__(self, stream: BinaryIO, digest: bool = True):
        self.stream = stream
        self.hash = hashlib.sha256() if digest else None
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        if data:
            self.bytes += len(data)
            if self.hash is not None:
                self.hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(_BLOCK):
            pass


def is_local(url: str) -> bool:
    return not url.startswith(("pipe:", "http://", "https://"))


def open_stream(url: str) -> BinaryIO:
    """A binary stream of a local path, an http(s) URL (curl) or a `pipe:` command (webdataset's gopen)."""
    if is_local(url):
        return open(url, "rb")
    return wds_gopen(url, "rb")


_CURL_EXITS = {
    6: "cannot resolve the host",
    7: "cannot connect to the server",
    18: "the transfer ended early (partial file)",
    22: "the server answered with an HTTP error (e.g. 404 not found)",
    28: "timed out",
    35: "TLS handshake failed",
    52: "the server sent nothing",
    56: "the connection broke while receiving",
}
_PIPE_EXIT = re.compile(r"exit (-?\d+) \(read\)")


def _failure(exc: BaseException, stream: BinaryIO) -> str:
    """What went wrong; when reading a download or command broke the tar, the process's own exit
    status (a 404, a failed command) says more than the tar error it caused."""
    if not isinstance(exc, OSError) and not isinstance(stream, io.IOBase):
        try:
            stream.close()
        except OSError as closing:
            match = _PIPE_EXIT.search(str(closing))
            if match and int(match.group(1)) not in (23, 141, -13):  # not just "we stopped reading"
                return _describe(closing)
        except Exception:
            pass
    return _describe(exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "missing (no such file)"
    text = str(exc.args[0]) if getattr(exc, "args", None) else str(exc)
    match = _PIPE_EXIT.search(str(exc))
    if isinstance(exc, OSError) and match:  # webdataset's Pipe: curl for http(s), a shell command for pipe:
        status = int(match.group(1))
        if "'curl'" in text or "curl" in text.split(",")[0]:
            return f"download failed: curl exit {status}, {_CURL_EXITS.get(status, 'see `man curl`')}"
        return f"the pipe: command failed (exit {status})"
    if isinstance(exc, tarfile.ReadError):
        text = str(exc)
        if "unexpected end of data" in text or "empty header" in text or "truncated" in text:
            return f"truncated or not a tar file ({text})"
        return f"not a readable tar file ({text})"
    return f"{type(exc).__name__}: {text}"


# ----------------------------------------------------------------------------- tar members
#
# Python's `tarfile` costs ~70 us per member (TarInfo objects, many small reads): with seven members
# per sample that was more than half the time a training worker spent outside JPEG decoding. Shards
# are plain POSIX tars, so a header is parsed here with a few slices; GNU long names and pax
# records (other writers, e.g. webdataset's) are understood; anything else is skipped by its size.

_BLOCKSIZE = 512
_EMPTY_BLOCK = bytes(_BLOCKSIZE)
_REGULAR = (b"0", b"\0", b"7")
_GNU_LONGNAME, _PAX_HEADER = b"L", b"x"


def _read_exact(reader: _DigestReader, size: int) -> bytes:
    data = reader.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = reader.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _octal(field: bytes, what: str) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256 (files over 8 GiB)
        value = int.from_bytes(field[1:], "big")
        return -value if field[:1] == b"\xff" else value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise tarfile.ReadError(f"bad {what} field {text[:20]!r} in a tar header") from None


def _header_checksum_ok(header: bytes) -> bool:
    stored = _octal(header[148:156], "checksum")
    unsigned = sum(header) - sum(header[148:156]) + 256  # the checksum field counts as 8 spaces
    if stored == unsigned:
        return True
    high = sum(1 for i, b in enumerate(header) if b > 127 and not 148 <= i < 156)
    return stored == unsigned - 256 * high  # some old writers summed signed bytes


def _pax_path(records: bytes) -> str | None:
    """The `path` record of a pax extended header ("<len> path=<value>\n" records)."""
    position = 0
    path = None
    while position < len(records):
        space = records.find(b" ", position)
        if space < 0:
            break
        length = int(records[position:space])
        keyword, _, value = records[space + 1 : position + length - 1].partition(b"=")
        if keyword == b"path":
            path = value.decode("utf-8")
        position += length
    return path


def iter_tar_members(reader: _DigestReader) -> Iterator[tuple[str, bytes]]:
    """(name, data) of every regular file of a tar stream, in order; the stream is read up to the
    end-of-archive block. Raises `tarfile.ReadError` for a bad header or a stream that ends early."""
    long_name: str | None = None
    offset = 0
    while True:
        header = _read_exact(reader, _BLOCKSIZE)
        if len(header) < _BLOCKSIZE:
            if offset == 0 and not header:
                raise tarfile.ReadError("empty file")
            raise tarfile.ReadError("unexpected end of data (no end-of-archive block)")
        if header == _EMPTY_BLOCK:
            return
        if not _header_checksum_ok(header):
            raise tarfile.ReadError(f"bad checksum in the tar header at byte {offset}")
        size = _octal(header[124:136], "size")
        kind = header[156:157]
        data = _read_exact(reader, size)
        padding = -size % _BLOCKSIZE
        if len(data) < size or len(_read_exact(reader, padding)) < padding:
            raise tarfile.ReadError("unexpected end of data")
        offset += _BLOCKSIZE + size + padding
        if kind == _GNU_LONGNAME:
            long_name = data.split(b"\0", 1)[0].decode("utf-8")
            continue
        if kind == _PAX_HEADER:
            long_name = _pax_path(data) or long_name
            continue
        if kind not in _REGULAR:  # directories, links, global pax headers: no sample data
            long_name = None
            continue
        if long_name is not None:
            name, long_name = long_name, None
        else:
            name = header[:100].split(b"\0", 1)[0].decode("utf-8")
            if header[257:262] == b"ustar" and header[345] != 0:
                name = header[345:500].split(b"\0", 1)[0].decode("utf-8") + "/" + name
        yield name, data


class ShardScan:
    """Iterate once over the samples of the shard at `url`; afterwards `samples`, `bytes` and `sha256`
    describe what was read (`sha256` is None when `digest=False`)."""

    def __init__(self, url: str, *, digest: bool = True):
        self.url = url
        self.digest = digest
        self.samples = 0
        self.bytes = 0
        self.sha256: str | None = None
        self.complete = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            stream = open_stream(self.url)
        except Exception as exc:
            raise ShardCorruptError.of(self.url, _describe(exc)) from exc
        reader = _DigestReader(stream, self.digest)
        try:
            yield from self._samples(reader)
            reader.drain()
            stream.close()  # a pipe (curl, a command) reports its exit status here
        except ShardCorruptError:
            raise
        except (OSError, EOFError, ValueError, tarfile.TarError) as exc:
            raise ShardCorruptError.of(self.url, _failure(exc, stream), self.samples) from exc
        finally:
            self.bytes = reader.bytes
            with contextlib.suppress(Exception):  # already reported, or the consumer stopped early
                stream.close()
        self.sha256 = reader.hash.hexdigest() if reader.hash is not None else None
        self.complete = True

    def _samples(self, reader: _DigestReader) -> Iterator[dict[str, Any]]:
        current: dict[str, Any] | None = None
        for name, data in iter_tar_members(reader):
            key, suffix = base_plus_ext(name)
            if key is None:
                continue
            suffix = suffix.lower()
            if current is None or key != current["__key__"]:
                if current is not None:
                    self.samples += 1
                    yield current
                current = {"__key__": key, "__url__": self.url}
            if suffix in current:
                raise ValueError(f"sample {key}: member {suffix} appears twice")
            current[suffix] = data
        if current is not None:
            self.samples += 1
            yield current


def size_problem(size: int, expected: int) -> str:
    return f"size {size} bytes, manifest says {expected}" + (" (truncated)" if size < expected else "")


def end_problems(scan: ShardScan, entry: dict) -> list[str]:
    """What differs between a finished scan and the shard's manifest entry."""
    problems = []
    if scan.bytes != entry["bytes"]:
        problems.append(size_problem(scan.bytes, entry["bytes"]))
    if scan.sha256 is not None and scan.sha256 != entry["sha256"]:
        problems.append(f"sha256 mismatch (manifest {entry['sha256'][:12]}…, file {scan.sha256[:12]}…)")
    if scan.samples != entry["samples"]:
        problems.append(f"{scan.samples} samples, manifest says {entry['samples']}")
    return problems


def local_size_problem(url: str, entry: dict) -> str | None:
    """For a local shard, a missing file or a wrong size, found before reading a byte."""
    if not is_local(url):
        return None
    try:
        size = os.stat(url).st_size
    except FileNotFoundError:
        return "missing (no such file)"
    except OSError as exc:
        return f"cannot stat ({exc})"
    if size != entry["bytes"]:
        return size_problem(size, entry["bytes"])
    return None


def digest_file(path: str | Path, block: int = _BLOCK) -> tuple[int, str]:
    """(size, sha256) of a file at a local path, URL or `pipe:` command, read once as a stream."""
    try:
        stream = open_stream(str(path))
    except Exception as exc:
        raise ShardCorruptError.of(str(path), _describe(exc)) from exc
    reader = _DigestReader(stream)
    try:
        while reader.read(block):
            pass
        stream.close()
    except OSError as exc:
        raise ShardCorruptError.of(str(path), _describe(exc)) from exc
    finally:
        with contextlib.suppress(Exception):
            stream.close()
    assert reader.hash is not None
    return reader.bytes, reader.hash.hexdigest()
