"""Where `b1k-shards merge` writes, and how each input shard gets there.

`check_output` and `check_replaceable`: OUT is a folder apart from every input, empty, or (with
`overwrite`) a shard set (replaced whole once the new one is complete: `shards.swap`). `place_shards`
names each input shard in OUT (`<split>-NNNNNN.tar`, splits in order, inputs in order);
`transfer_shard` hardlinks a local shard once its sha256 is verified, else copies or downloads it
(`copy_checked`: written under a temporary name, checked against the input's size and sha256 as it
streams, then renamed), so OUT never holds a shard that differs from its manifest entry; and
`check_placed` reads each placed shard's tar through, so it never holds one no reader can read.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from pathlib import Path

from schemas.manifest import MANIFEST_NAME, SPLITS, FileEntry, ShardEntry
from shards.errors import ShardCorruptError
from shards.lock import LOCK_NAME
from shards.merge.inputs import MergeError, MergeInput
from shards.scan import ShardScan, is_local, local_file_problem, open_stream
from shards.stats import STATS_DIR
from shards.tar import HashingReader
from shards.writer import TMP_SUFFIX

_OURS_SUFFIXES = (".tar", TMP_SUFFIX)


def check_output(out: Path, inputs: list[MergeInput]) -> None:
    """OUT must be a folder (or absent) apart from every input (checked before OUT is locked)."""
    resolved = out.resolve()
    for inp in inputs:
        if inp.shard_set.kind == "local":
            root = Path(inp.shard_set.root).resolve()
            if resolved == root or root in resolved.parents or resolved in root.parents:
                raise MergeError(f"OUT {out} overlaps input {inp.location}; write the merged set elsewhere")
    if out.exists() and not out.is_dir():
        raise MergeError(f"OUT {out} exists and is not a directory")


def check_replaceable(out: Path, overwrite: bool) -> None:
    """OUT holds nothing but its lock, or (with `overwrite`) only what a shard set holds; nothing is
    removed here (the new set replaces it whole once complete)."""
    out = Path(out)
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()):
        if not overwrite:
            raise MergeError(f"OUT {out} is not empty; pass --overwrite to replace the shard set in it")
        others = [
            p.name
            for p in out.iterdir()
            if not (
                p.name in (MANIFEST_NAME, STATS_DIR, ".work", LOCK_NAME) or p.name.endswith(_OURS_SUFFIXES)
            )
        ]
        if others:
            raise MergeError(
                f"OUT {out} holds files that are not part of a shard set ({', '.join(sorted(others)[:5])}); "
                "not removing them: choose another OUT or remove them yourself"
            )


def check_placed(path: Path, entry: ShardEntry, url: str, location: str) -> None:
    """The placed shard's tar read through (headers, pax records, sizes, sample count; nothing
    decoded): its bytes are the input's, verified, but a publisher's hashes vouch for bytes, not for
    a readable tar."""
    scan = ShardScan(str(path), digest=False, zero_copy=True)
    try:
        for _ in scan:
            pass
    except ShardCorruptError as exc:
        raise MergeError(
            f"input shard {url} cannot be read ({exc.reason}); check it with `b1k-shards verify {location}`"
        ) from None
    if scan.samples != entry.samples:
        raise MergeError(
            f"input shard {url} holds {scan.samples} samples, its manifest says {entry.samples}; "
            f"check it with `b1k-shards verify {location}`"
        )


def copy_checked(url: str, entry: FileEntry, dst: Path, location: str) -> str:
    tmp = dst.with_name(dst.name + TMP_SUFFIX)
    try:
        stream = open_stream(url)
    except Exception as exc:
        raise MergeError(f"cannot read input shard {url}: {exc}") from exc
    reader = HashingReader(stream)
    most = entry.bytes + 1  # a server that sends more is cut off there: refused below
    try:
        with open(tmp, "wb") as f:
            while block := reader.read(min(1 << 22, most - reader.bytes)):
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MergeError(f"cannot read input shard {url}: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            stream.close()
    digest = reader.hexdigest() or ""
    if reader.bytes != entry.bytes or digest != entry.sha256:
        tmp.unlink(missing_ok=True)
        what = (
            f"size {reader.bytes} bytes, manifest says {entry.bytes}"
            if reader.bytes != entry.bytes
            else "sha256 mismatch"
        )
        raise MergeError(
            f"input shard {url} is corrupt ({what}); check it with `b1k-shards verify {location}`"
        )
    os.replace(tmp, dst)
    return "copied"


def transfer_shard(inp: MergeInput, entry: ShardEntry, dst: Path, link: bool) -> str:
    """Put the shard `entry` of `inp` at `dst`: hardlink, else a checked copy/download."""
    url = inp.shard_set.url(entry.name)
    if is_local(url):
        try:
            size = os.stat(url).st_size
        except FileNotFoundError:
            raise MergeError(
                f"input shard {url} is missing; check the set with `b1k-shards verify {inp.location}`"
            ) from None
        if size != entry.bytes:
            raise MergeError(
                f"input shard {url} has {size} bytes, its manifest says {entry.bytes}; "
                f"check the set with `b1k-shards verify {inp.location}`"
            )
        if link:  # a link carries the input's bytes as they are: they are verified first
            if problem := local_file_problem(url, entry):
                raise MergeError(
                    f"input shard {url} is corrupt ({problem}); check it with `b1k-shards verify {inp.location}`"
                )
            try:
                os.link(url, dst)
                return "linked"
            except OSError as exc:
                if exc.errno not in (
                    errno.EXDEV,
                    errno.EPERM,
                    errno.EACCES,
                    errno.ENOTSUP,
                    errno.EMLINK,
                    errno.ENOSYS,
                ):
                    raise
    return copy_checked(url, entry, dst, inp.location)


@dataclass
class PlacedShard:
    inp: MergeInput
    split: str
    entry: ShardEntry  # its entry in the input's manifest
    name: str  # name in OUT


def place_shards(inputs: list[MergeInput]) -> list[PlacedShard]:
    placed = []
    for split in SPLITS:
        index = 0
        for inp in inputs:
            for entry in inp.manifest.shards(split):
                placed.append(PlacedShard(inp, split, entry, f"{split}-{index:06d}.tar"))
                index += 1
    return placed
