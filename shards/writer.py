"""Write tar shards atomically: each shard is written under a temporary name, hashed as it is
written, and renamed when complete, so a shard file is either complete or absent.

Samples are laid out exactly as webdataset's `TarWriter` lays them out (`<key>.<member>`, members
in sorted order, USTAR), but written with `tarfile` directly: importing webdataset imports torch,
which would cost every preprocess worker process ~280 MB for nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tarfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"
_BLOCK = tarfile.BLOCKSIZE


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
    """A write-only file that keeps a running sha256 and byte count of what goes through it."""

    def __init__(self, path: Path):
        self.path = path
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 (closed by close())
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
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
        return self._hash.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file under a temporary name, then rename it into place."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class _TarSamples:
    """A tar stream of webdataset samples with fixed metadata, so the same samples always give
    byte-identical files (and equal sha256). An integer mtime keeps headers plain USTAR: a float
    one makes tarfile add a PAX header (~1 KB) to every member."""

    def __init__(self, handle: _HashingFile):
        self.handle = handle
        self.tar = tarfile.open(fileobj=handle, mode="w|", format=tarfile.USTAR_FORMAT)  # noqa: SIM115 (closed by close())
        self.samples = 0
        self.size = 0  # bytes of headers and padded payloads written so far

    def write(self, sample: dict) -> None:
        key = sample.get("__key__")
        if not isinstance(key, str):
            raise ValueError(f"a sample needs a string __key__, got {key!r}")
        for name in sorted(sample):
            if name.startswith("_"):
                continue
            data = sample[name]
            if isinstance(data, str):
                data = data.encode("utf-8")
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise ValueError(f"sample {key}: member {name} is {type(data).__name__}, expected bytes")
            info = tarfile.TarInfo(f"{key}.{name}")
            info.size, info.mtime, info.mode = len(data), 0, 0o444
            info.uname = info.gname = "b1k"
            self.tar.addfile(info, io.BytesIO(data))
            self.size += _BLOCK + -(-len(data) // _BLOCK) * _BLOCK
        self.samples += 1

    def close(self) -> None:
        self.tar.close()
        self.handle.close()

    def discard(self) -> None:
        """Close and delete the temporary file (tarfile would otherwise flush into it when collected)."""
        with contextlib.suppress(Exception):
            self.tar.close()
        self.handle.close()
        self.handle.path.unlink(missing_ok=True)


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
        current = self._open
        if current is not None:
            incoming = sum(len(v) for k, v in sample.items() if not k.startswith("_"))
            if current.samples >= self.max_samples or current.size + incoming > self.max_bytes:
                self._finish_shard()
        if self._open is None:
            final = self._final_path()
            self._open = _TarSamples(_HashingFile(final.with_name(final.name + TMP_SUFFIX)))
        self._open.write(sample)

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


def write_tar(path: Path, samples: Iterable[dict]) -> ShardInfo:
    """Write one tar with all `samples` (temporary name, then rename); `name` is the file name."""
    path = Path(path)
    handle = _HashingFile(path.with_name(path.name + TMP_SUFFIX))
    tar = _TarSamples(handle)
    try:
        for sample in samples:
            tar.write(sample)
        tar.close()
    except BaseException:
        tar.discard()
        raise
    os.replace(handle.path, path)
    return ShardInfo(path.name, tar.samples, handle.size, handle.hexdigest())
