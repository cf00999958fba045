"""Write tar shards atomically: each shard is written under a temporary name, hashed as it is
written, and renamed when complete, so a shard file is either complete or absent.

Samples are laid out exactly as webdataset's `TarWriter` lays them out (`<key>.<member>`, members
in sorted order, USTAR), with the very bytes `tarfile` would write, but without webdataset (it
imports torch: ~280 MB in every preprocess worker for nothing) and with headers built from a
template (`shards.tar.member_header`). A sample can be carried as tar bytes (`RawSample`): preprocess copies
samples from its per-episode tars into the final shards without parsing or re-encoding them
(`iter_raw_samples` -> `ShardWriter.write_raw`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from shards.tar import (
    HashingReader,
    Member,
    buffered_reader,
    end_of_archive,
    iter_members,
    iter_sample_members,
    member_header,
    padding,
)

TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class ShardInfo:
    """A complete shard as the manifest lists it; `name` is relative to the set's root."""

    name: str
    samples: int
    bytes: int
    sha256: str

    def to_json(self) -> dict:
        return asdict(self)


class _HashingFile:
    """A write-only file that keeps a running sha256 (unless `digest=False`) and byte count of what
    goes through it."""

    def __init__(self, path: Path, digest: bool = True):
        self.path = path
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 (closed by close())
        self._hash = hashlib.sha256() if digest else None
        self.size = 0

    def write(self, data: bytes) -> int:
        if self._hash is not None:
            self._hash.update(data)
        self.size += len(data)
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def hexdigest(self) -> str:
        return self._hash.hexdigest() if self._hash is not None else ""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file under a temporary name of this process's (removed if the write fails), synced,
    then renamed into place: the file is either complete or absent."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def tool_version() -> str:
    """This project's installed version, for the `created_by` of what it writes."""
    try:
        from importlib.metadata import version

        return version("b1k-smolvla")
    except Exception:
        return "0+unknown"


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@dataclass(frozen=True)
class RawSample:
    """One sample as tar bytes: its members' headers and padded payloads, in member order, exactly as
    they appear in a tar this module wrote. `payload` is the sum of the member sizes (the quantity
    `ShardWriter`'s `max_bytes` counts)."""

    key: str
    data: bytes
    payload: int


def encode_tar_sample(sample: dict) -> RawSample:
    """The tar bytes of a webdataset sample (`__key__` + member suffix -> bytes/str), members sorted
    by name; keys starting with `_` other than `__key__` are not written."""
    key = sample.get("__key__")
    if not isinstance(key, str):
        raise ValueError(f"a sample needs a string __key__, got {key!r}")
    parts: list[bytes] = []
    payload = 0
    for name in sorted(sample):
        if name.startswith("_"):
            continue
        data = sample[name]
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"sample {key}: member {name} is {type(data).__name__}, expected bytes")
        size = len(data) if not isinstance(data, memoryview) else data.nbytes
        parts += (member_header(f"{key}.{name}", size), data, padding(size))
        payload += size
    return RawSample(key, b"".join(parts), payload)


def iter_raw_samples(path: str | Path) -> Iterator[RawSample]:
    """The samples of a tar this module wrote, as `RawSample`s (no payload is decoded or copied into
    Python objects other than the sample's bytes): copying them into another tar with
    `ShardWriter.write_raw` gives the same bytes as re-writing the decoded samples. Plain USTAR
    regular files only; anything else (or a truncated file) raises `tarfile.ReadError` naming the
    file."""
    path = Path(path)
    with open(path, "rb", buffering=0) as f:
        try:
            for key, members in iter_sample_members(
                iter_members(buffered_reader(HashingReader(f, digest=False)))
            ):
                yield _raw_sample(key, [member for _, member in members])
        except tarfile.ReadError as exc:
            raise tarfile.ReadError(f"{path}: {exc}") from None


def _raw_sample(key: str | None, members: list[Member]) -> RawSample:
    for member in members:
        if key is None:
            raise tarfile.ReadError(f"member {member.name!r} has no <key>.<suffix> name")
        if member.extended or member.header[257:263] != b"ustar\0":
            raise tarfile.ReadError(
                f"member {member.name!r} is not a plain USTAR file; only tars written by shards.writer "
                "can be copied raw"
            )
    parts = [part for m in members for part in (m.header, m.data, padding(len(m.data)))]
    return RawSample(key, b"".join(parts), sum(len(m.data) for m in members))


class _TarSamples:
    """A tar stream of samples with fixed metadata, so the same samples always give byte-identical
    files (and equal sha256). An integer mtime keeps headers plain USTAR: a float one makes tarfile
    add a PAX header (~1 KB) to every member."""

    def __init__(self, handle: _HashingFile):
        self.handle = handle
        self.samples = 0
        self.size = 0  # bytes of headers and padded payloads written so far

    def write(self, sample: dict) -> None:
        self.write_raw(encode_tar_sample(sample))

    def write_raw(self, raw: RawSample) -> None:
        self.handle.write(raw.data)
        self.size += len(raw.data)
        self.samples += 1

    def close(self) -> None:
        self.handle.write(end_of_archive(self.size))
        self.handle.close()

    def discard(self) -> None:
        """Close and delete the temporary file."""
        with contextlib.suppress(Exception):
            self.handle.close()
        self.handle.path.unlink(missing_ok=True)


def starts_new_shard(samples: int, size: int, payload: int, max_samples: int, max_bytes: int) -> bool:
    """Whether a sample of `payload` member bytes goes to a new shard rather than the open one, which
    holds `samples` samples in `size` tar bytes (`ShardWriter`'s rule)."""
    return samples >= max_samples or size + payload > max_bytes


def plan_shards(
    sizes: Sequence[int], payloads: Sequence[int], max_samples: int, max_bytes: int
) -> list[range]:
    """The positions of the samples each shard gets when `ShardWriter` writes samples of these tar
    sizes and payloads in order: shards can then be written independently (in parallel) with
    `write_tar`, byte for byte as `ShardWriter` writes them."""
    spans: list[range] = []
    start, size = 0, 0
    for position, (sample_size, payload) in enumerate(zip(sizes, payloads, strict=True)):
        if position > start and starts_new_shard(position - start, size, payload, max_samples, max_bytes):
            spans.append(range(start, position))
            start, size = position, 0
        size += sample_size
    if len(sizes) > start:
        spans.append(range(start, len(sizes)))
    return spans


class ShardWriter:
    """Write samples into `<prefix>-<index:06d>.tar` shards under `root`, starting a new shard when
    the current one holds `max_samples` samples or would grow past `max_bytes` bytes."""

    def __init__(
        self,
        root: Path,
        prefix: str = "train",
        max_bytes: int = 1 << 30,
        max_samples: int = 10_000,
        start_index: int = 0,
    ):
        self.root = Path(root)
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.max_samples = max_samples
        self.root.mkdir(parents=True, exist_ok=True)
        self.shards: list[ShardInfo] = []
        self._index = start_index
        self._open: _TarSamples | None = None

    def _final_path(self) -> Path:
        return self.root / f"{self.prefix}-{self._index:06d}.tar"

    def _finish_shard(self) -> None:
        current, self._open = self._open, None
        if current is None:
            return
        current.close()
        final = self._final_path()
        os.replace(current.handle.path, final)
        name = final.relative_to(self.root).as_posix()
        self.shards.append(ShardInfo(name, current.samples, current.handle.size, current.handle.hexdigest()))
        self._index += 1

    def write(self, sample: dict) -> None:
        self.write_raw(encode_tar_sample(sample))

    def write_raw(self, raw: RawSample) -> None:
        """Write a sample already in tar form (`encode_tar_sample`, `iter_raw_samples`)."""
        current = self._open
        if current is not None and starts_new_shard(
            current.samples, current.size, raw.payload, self.max_samples, self.max_bytes
        ):
            self._finish_shard()
        if self._open is None:
            final = self._final_path()
            self._open = _TarSamples(_HashingFile(final.with_name(final.name + TMP_SUFFIX)))
        self._open.write_raw(raw)

    def close(self) -> list[ShardInfo]:
        """Finish the last shard; returns every complete shard written."""
        self._finish_shard()
        return self.shards

    def abort(self) -> None:
        """Drop the shard being written (its temporary file is removed)."""
        current, self._open = self._open, None
        if current is not None:
            current.discard()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_tar(path: Path, samples: Iterable[dict | RawSample], digest: bool = True) -> ShardInfo:
    """Write one tar with all `samples` (decoded, or already in tar form: `RawSample`) under a
    temporary name, then rename it; `name` is the file name. `digest=False` skips the sha256
    (`sha256` is then ""): for intermediate files nobody checks."""
    path = Path(path)
    handle = _HashingFile(path.with_name(path.name + TMP_SUFFIX), digest)
    tar = _TarSamples(handle)
    try:
        for sample in samples:
            tar.write_raw(sample if isinstance(sample, RawSample) else encode_tar_sample(sample))
        tar.close()
    except BaseException:
        tar.discard()
        raise
    os.replace(handle.path, path)
    return ShardInfo(path.name, tar.samples, handle.size, handle.hexdigest())
