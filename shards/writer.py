"""Write tar shards atomically: each shard is written under a temporary name, hashed as it is
written, and renamed when complete, so a shard file is either complete or absent."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import webdataset as wds

TMP_SUFFIX = ".tmp"
# Fixed tar metadata so the same samples always give byte-identical shards (and equal sha256).
_TAR_OPTIONS = {"mtime": 0.0, "user": "b1k", "group": "b1k", "mode": 0o444}


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


class ShardWriter:
    """Write samples into `<prefix>-<index:06d>.tar` shards under `root`, starting a new shard when
    the current one reaches `max_samples` samples or `max_bytes` bytes.

    Built on webdataset's ShardWriter; adds temporary names, sha256 and the manifest entries.
    """

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
        self.root.mkdir(parents=True, exist_ok=True)
        self.shards: list[ShardInfo] = []
        self._open: _HashingFile | None = None
        self._samples = 0
        self._writer = wds.ShardWriter(
            str(self.root / f"{prefix}-%06d.tar"),
            maxcount=max_samples,
            maxsize=max_bytes,
            start_shard=start_index,
            verbose=0,
            opener=self._open_tmp,
            post=self._finish_shard,
            **_TAR_OPTIONS,
        )

    def _open_tmp(self, final_name: str) -> _HashingFile:
        self._open = _HashingFile(Path(final_name + TMP_SUFFIX))
        self._samples = 0
        return self._open

    def _finish_shard(self, final_name: str) -> None:
        handle, self._open = self._open, None
        assert handle is not None
        handle.close()
        if self._samples == 0:  # webdataset opens a shard eagerly; an empty one is not a shard
            handle.path.unlink()
            return
        os.replace(handle.path, final_name)
        name = Path(final_name).relative_to(self.root).as_posix()
        self.shards.append(ShardInfo(name, self._samples, handle.size, handle.hexdigest()))

    def write(self, sample: dict) -> None:
        self._writer.write(sample)
        self._samples += 1

    def close(self) -> list[ShardInfo]:
        """Finish the last shard; returns every complete shard written."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self.shards

    def abort(self) -> None:
        """Drop the shard being written (its temporary file is removed)."""
        tar = getattr(self._writer, "tarstream", None) if self._writer is not None else None
        if tar is not None:
            # Let tarfile flush into the doomed file now, not into a closed one when it is collected.
            with contextlib.suppress(Exception):
                tar.close()
            self._writer.tarstream = None
        self._writer = None
        if self._open is not None:
            self._open.close()
            self._open.path.unlink(missing_ok=True)
            self._open = None

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
    count = 0
    try:
        with wds.TarWriter(handle, **_TAR_OPTIONS) as tar:
            for sample in samples:
                tar.write(sample)
                count += 1
    except BaseException:
        handle.close()
        handle.path.unlink(missing_ok=True)
        raise
    handle.close()
    os.replace(handle.path, path)
    return ShardInfo(path.name, count, handle.size, handle.hexdigest())
