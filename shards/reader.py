"""Open a shard set wherever it lives (local dir, manifest path, http(s) URL prefix, `pipe:` command)
and read its samples: a split in manifest order, every shard verified before it is read
(`ShardSet.checked_samples`), or one tar as it is (`iter_tar_samples`). The trainer's shuffled,
node- and worker-split stream is `train/`'s; it reads each shard with the same `iter_checked_shard`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    Manifest,
    ManifestError,
    ShardEntry,
    parse_manifest,
    require_set_name,
)
from schemas.sample import ACTION_IS_PAD_MEMBER, ACTION_MEMBER, JSON_MEMBER, STATE_MEMBER, image_member
from shards.errors import ShardCorruptError, ShardNetworkError, ShardSetError, verify_hint
from shards.fetch import fetch_bytes
from shards.guard import CorruptShardLog, VerifiedShards, iter_checked_shard
from shards.scan import ShardScan, location_kind

__all__ = [
    "CorruptShardLog",
    "ShardCorruptError",
    "ShardSet",
    "ShardSetError",
    "iter_checked_shard",
    "iter_tar_samples",
    "open_shard_set",
    "verify_hint",
]


@dataclass(frozen=True)
class ShardSet:
    """A shard set: its manifest (read and checked once, here) and how to address its files.

    `root` is a local directory, an `http(s)://` prefix, or a `pipe:` command template that
    contains `{name}` (e.g. `pipe:aws s3 cp s3://bucket/set/{name} -`).
    """

    location: str
    root: str
    manifest: Manifest

    @property
    def kind(self) -> str:
        return location_kind(self.root)

    def url(self, name: str) -> str:
        """The address of a file of the set, as webdataset's `gopen` opens it."""
        return set_url(self.root, name)

    def urls(self, split: str) -> list[str]:
        return [self.url(shard.name) for shard in self.manifest.shards(split)]

    def read_bytes(self, name: str, most: int) -> bytes:
        """The whole file `name` of the set, refused beyond `most` bytes (its manifest size)."""
        return read_location(self.url(name), most, f"file of {most} bytes by its manifest entry")

    @property
    def members(self) -> list[str]:
        """Every member a sample of this set must carry (image members follow each camera's encoding)."""
        cameras = self.manifest.cameras
        images = [image_member(name, camera.encoding) for name, camera in cameras.items()]
        return [*images, STATE_MEMBER, ACTION_MEMBER, ACTION_IS_PAD_MEMBER, JSON_MEMBER]

    def expected(self, split: str) -> dict[str, ShardEntry]:
        """Shard URL -> its manifest entry (name, samples, bytes, sha256), for in-stream checks."""
        return {self.url(shard.name): shard for shard in self.manifest.shards(split)}

    def checked_samples(self, split: str, verified: VerifiedShards | None = None) -> Iterator[dict[str, Any]]:
        """Every raw sample of `split`, shard by shard in manifest order, each shard checked as the
        trainer checks it (`iter_checked_shard`): its size and sha256 against the manifest before its
        first sample is read (a remote shard is downloaded and verified first), every sample for the
        schema's members, its sample count at the end. A problem raises `ShardCorruptError` naming
        the shard and suggesting `b1k-shards verify`. `verified`: the shards this process has hashed
        already (an unchanged local file is not hashed again on a second pass)."""
        members = self.members
        for url, entry in self.expected(split).items():
            yield from iter_checked_shard(
                url, entry=entry, members=members, location=self.location, verified=verified
            )


def set_url(root: str, name: str) -> str:
    """The address of file `name` of the set at `root` (a directory, an http(s) prefix, a `pipe:` template)."""
    kind = location_kind(root)
    if kind == "pipe":
        # Names are plain (`schemas.manifest.require_set_name`: no quote, space or shell character),
        # so whatever quoting the user's template puts around {name}, a name stays one word.
        return root.replace("{name}", require_set_name(name, "file name"))
    if kind == "http":
        return f"{root.rstrip('/')}/{name}"
    return str(Path(root) / name)


def read_location(url: str, most: int, what: str) -> bytes:
    """A whole file given as a local path, an http(s) URL or a `pipe:` command: at most `most` bytes,
    read like a shard (minimum transfer rate, network failures retried: `shards.fetch.fetch_bytes`)."""
    try:
        return fetch_bytes(url, most, what)
    except ShardSetError:
        raise
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise ShardSetError(f"cannot read {url}: {reason}") from exc


def open_shard_set(location: str | Path) -> ShardSet:
    """Open a set given as a directory, a manifest path, an http(s) URL prefix (or manifest URL),
    or a `pipe:` command template with `{name}`; the manifest is read and validated."""
    location = str(location)
    kind = location_kind(location)
    if kind == "pipe":
        if "{name}" not in location:
            raise ShardSetError(
                f"a pipe: shard set needs a {{name}} placeholder for file names, got {location!r}"
            )
        root = location
    elif location.endswith(".json"):
        root = location.rsplit("/", 1)[0] if kind == "http" else str(Path(location).parent)
    else:
        root = location.rstrip("/") if kind == "http" else location
    manifest_url = location if location.endswith(".json") and kind != "pipe" else set_url(root, MANIFEST_NAME)
    if kind == "local" and not Path(manifest_url).is_file():
        raise ManifestError(
            f"{manifest_url}: no manifest.json here; expected a shard set written by b1k-preprocess"
        )
    try:
        text = read_location(manifest_url, MAX_MANIFEST_BYTES, "manifest")
    except ShardNetworkError as exc:  # its message says what failed, how often
        raise ManifestError(f"{manifest_url}: cannot read the manifest: {exc}") from exc
    except ShardSetError as exc:
        raise ManifestError(f"{manifest_url}: cannot read the manifest ({exc.__cause__ or exc})") from exc
    return ShardSet(location, root, parse_manifest(text, where=manifest_url))


def iter_tar_samples(url: str) -> Iterator[dict[str, Any]]:
    """The raw samples (member name -> bytes, plus `__key__`/`__url__`) of one tar, in file order,
    grouped like webdataset's `tarfile_to_samples`; a read failure raises `ShardCorruptError`."""
    yield from ShardScan(url, digest=False)
