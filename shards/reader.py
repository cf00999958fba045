"""Open a shard set wherever it lives (local dir, manifest path, http(s) URL prefix, `pipe:` command)
and stream its samples as a webdataset pipeline."""

from __future__ import annotations

import random
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import webdataset as wds

from schemas.manifest import MANIFEST_NAME, ManifestError, parse_manifest, require_set_name, shards_of
from schemas.sample import ACTION_IS_PAD_MEMBER, ACTION_MEMBER, JSON_MEMBER, STATE_MEMBER, image_member
from shards.errors import ShardCorruptError, ShardSetError, verify_hint
from shards.guard import (
    CorruptShardLog,
    checked_decode,
    checked_tar_samples,
    decode_checked,
    iter_checked_shard,
)
from shards.scan import ShardScan, location_kind

__all__ = [
    "CorruptShardLog",
    "ShardCorruptError",
    "ShardSet",
    "ShardSetError",
    "decode_checked",
    "iter_checked_shard",
    "iter_tar_samples",
    "open_shard_set",
    "sample_pipeline",
    "verify_hint",
]


@dataclass(frozen=True)
class ShardSet:
    """A shard set: its validated manifest and how to address its files.

    `root` is a local directory, an `http(s)://` prefix, or a `pipe:` command template that
    contains `{name}` (e.g. `pipe:aws s3 cp s3://bucket/set/{name} -`).
    """

    location: str
    root: str
    manifest: dict

    @property
    def kind(self) -> str:
        return location_kind(self.root)

    def url(self, name: str) -> str:
        """The address of a file of the set, as webdataset's `gopen` opens it."""
        if self.kind == "pipe":
            # Names are plain (`schemas.manifest.require_set_name`: no quote, space or shell character),
            # so whatever quoting the user's template puts around {name}, a name stays one word.
            return self.root.replace("{name}", require_set_name(name, "file name"))
        if self.kind == "http":
            return f"{self.root.rstrip('/')}/{name}"
        return str(Path(self.root) / name)

    def urls(self, split: str) -> list[str]:
        return [self.url(shard["name"]) for shard in shards_of(self.manifest, split)]

    def read_bytes(self, name: str) -> bytes:
        return read_location(self.url(name))

    @property
    def members(self) -> list[str]:
        """Every member a sample of this set must carry (image members follow each camera's encoding)."""
        cameras = self.manifest["cameras"]
        images = [image_member(name, camera["encoding"]) for name, camera in cameras.items()]
        return [*images, STATE_MEMBER, ACTION_MEMBER, ACTION_IS_PAD_MEMBER, JSON_MEMBER]

    def expected(self, split: str) -> dict[str, dict]:
        """Shard URL -> its manifest entry (`name`, `samples`, `bytes`, `sha256`), for in-stream checks."""
        return {self.url(shard["name"]): shard for shard in shards_of(self.manifest, split)}

    def pipeline(
        self, split: str = "train", *, seed: int, skip_corrupt: CorruptShardLog | None = None, **kwargs: Any
    ):
        """`sample_pipeline` over one split, with every shard checked against the manifest as it streams
        (size, sample count, sha256, schema members, decodability). A corrupt shard raises
        `ShardCorruptError` naming it and suggesting `b1k-shards verify`; with `skip_corrupt` it is
        skipped and recorded in that log instead."""
        return sample_pipeline(
            self.urls(split),
            seed=seed,
            expected=self.expected(split),
            members=self.members,
            skip_corrupt=skip_corrupt,
            location=self.location,
            **kwargs,
        )


def read_location(url: str) -> bytes:
    """Read a whole file given as a local path, an http(s) URL or a `pipe:` command."""
    kind = location_kind(url)
    try:
        if kind == "http":
            with urllib.request.urlopen(url, timeout=60) as response:
                return response.read()
        if kind == "pipe":
            return subprocess.run(url[len("pipe:") :], shell=True, check=True, capture_output=True).stdout
        return Path(url).read_bytes()
    except (OSError, urllib.error.URLError, subprocess.CalledProcessError) as exc:
        raise ShardSetError(f"cannot read {url}: {exc}") from exc


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
    probe = ShardSet(location, root, {})
    manifest_url = location if location.endswith(".json") and kind != "pipe" else probe.url(MANIFEST_NAME)
    if kind == "local" and not Path(manifest_url).is_file():
        raise ManifestError(
            f"{manifest_url}: no manifest.json here; expected a shard set written by b1k-preprocess"
        )
    try:
        text = read_location(manifest_url)
    except ShardSetError as exc:
        raise ManifestError(f"{manifest_url}: cannot read the manifest ({exc.__cause__ or exc})") from exc
    return ShardSet(location, root, parse_manifest(text, where=manifest_url))


def iter_tar_samples(url: str) -> Iterator[dict[str, Any]]:
    """The raw samples (member name -> bytes, plus `__key__`/`__url__`) of one tar, in file order,
    grouped like webdataset's `tarfile_to_samples`; a read failure raises `ShardCorruptError`."""
    yield from ShardScan(url, digest=False)


def sample_pipeline(
    urls: list[str],
    *,
    seed: int,
    epoch: int = 0,
    shuffle_shards: bool = True,
    shuffle_buffer: int = 0,
    split_by_node: bool = True,
    split_by_worker: bool = True,
    decode: bool = True,
    handler: Callable = wds.reraise_exception,
    expected: Mapping[str, dict] | None = None,
    members: Sequence[str] | None = None,
    skip_corrupt: CorruptShardLog | None = None,
    location: str | None = None,
) -> wds.DataPipeline:
    """A webdataset pipeline over `urls`: shard shuffle (seeded by seed+epoch, identical on every
    rank so the node split stays disjoint), node and worker split, sample shuffle buffer, decode.

    Every shard is read with checks (see shards.guard): with `expected` (URL -> manifest entry) a
    shard's size, sample count and sha256 are compared with the manifest, with `members` every
    sample must carry them. A problem raises `ShardCorruptError` naming the shard (through
    `handler`, which re-raises by default; a handler returning True skips the rest of the shard)
    unless `skip_corrupt` is given: then the shard is skipped and recorded there. `location` is
    the set's location, used in the `b1k-shards verify` hint."""
    stages: list[Any] = [wds.SimpleShardList(urls)]
    if shuffle_shards:
        stages.append(
            wds.detshuffle(bufsize=len(urls) or 1, initial=len(urls) or 1, seed=seed, epoch=epoch - 1)
        )
    if split_by_node:
        stages.append(wds.split_by_node)
    if split_by_worker:
        stages.append(wds.split_by_worker)
    stages.append(checked_tar_samples(expected, members, skip_corrupt, handler, location))
    if shuffle_buffer > 1:
        stages.append(_seeded_shuffle(shuffle_buffer, seed, epoch))
    if decode:
        stages.append(checked_decode(skip_corrupt, handler, location))
    return wds.DataPipeline(*stages)


def _seeded_shuffle(bufsize: int, seed: int, epoch: int) -> Callable:
    """webdataset's buffer shuffle with an RNG made where the stream runs (inside the DataLoader
    worker), distinct per epoch, rank and worker and reproducible given the seed."""

    def stage(samples: Iterator[dict]) -> Iterator[dict]:
        rank, _, worker, _ = wds.utils.pytorch_worker_info()
        rng = random.Random(hash((seed, epoch, rank, worker)))
        yield from wds.filters._shuffle(samples, bufsize=bufsize, initial=bufsize, rng=rng)

    return stage
