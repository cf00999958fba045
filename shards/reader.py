"""Open a shard set wherever it lives (local dir, manifest path, http(s) URL prefix, `pipe:` command)
and stream its samples as a webdataset pipeline."""

from __future__ import annotations

import random
import shlex
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import webdataset as wds

from schemas.manifest import MANIFEST_NAME, ManifestError, parse_manifest, shards_of
from shards.codec import decode_sample


class ShardSetError(RuntimeError):
    """A shard set or one of its files cannot be read."""


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
            return self.root.format(name=shlex.quote(name))
        if self.kind == "http":
            return f"{self.root.rstrip('/')}/{name}"
        return str(Path(self.root) / name)

    def urls(self, split: str) -> list[str]:
        return [self.url(shard["name"]) for shard in shards_of(self.manifest, split)]

    def read_bytes(self, name: str) -> bytes:
        return read_location(self.url(name))


def location_kind(location: str) -> str:
    if location.startswith("pipe:"):
        return "pipe"
    if location.startswith(("http://", "https://")):
        return "http"
    return "local"


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
            raise ShardSetError(f"a pipe: shard set needs a {{name}} placeholder for file names, got {location!r}")
        root = location
    elif location.endswith(".json"):
        root = location.rsplit("/", 1)[0] if kind == "http" else str(Path(location).parent)
    else:
        root = location.rstrip("/") if kind == "http" else location
    probe = ShardSet(location, root, {})
    manifest_url = location if location.endswith(".json") and kind != "pipe" else probe.url(MANIFEST_NAME)
    if kind == "local" and not Path(manifest_url).is_file():
        raise ManifestError(f"{manifest_url}: no manifest.json here; expected a shard set written by b1k-preprocess")
    try:
        text = read_location(manifest_url)
    except ShardSetError as exc:
        raise ManifestError(f"{manifest_url}: cannot read the manifest ({exc.__cause__ or exc})") from exc
    return ShardSet(location, root, parse_manifest(text, where=manifest_url))


def iter_tar_samples(url: str, handler: Callable = wds.reraise_exception) -> Iterator[dict[str, Any]]:
    """The raw samples (member name -> bytes, plus `__key__`/`__url__`) of one tar, in file order."""
    yield from wds.tarfile_to_samples(handler=handler)(iter([{"url": url}]))


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
) -> wds.DataPipeline:
    """A webdataset pipeline over `urls`: shard shuffle (seeded by seed+epoch, identical on every
    rank so the node split stays disjoint), node and worker split, sample shuffle buffer, decode."""
    stages: list[Any] = [wds.SimpleShardList(urls)]
    if shuffle_shards:
        stages.append(wds.detshuffle(bufsize=len(urls) or 1, initial=len(urls) or 1, seed=seed, epoch=epoch - 1))
    if split_by_node:
        stages.append(wds.split_by_node)
    if split_by_worker:
        stages.append(wds.split_by_worker)
    stages.append(wds.tarfile_to_samples(handler=handler))
    if shuffle_buffer > 1:
        stages.append(_seeded_shuffle(shuffle_buffer, seed, epoch))
    if decode:
        stages.append(wds.map(decode_sample))
    return wds.DataPipeline(*stages)


def _seeded_shuffle(bufsize: int, seed: int, epoch: int) -> Callable:
    """webdataset's buffer shuffle with an RNG made where the stream runs (inside the DataLoader
    worker), distinct per epoch, rank and worker and reproducible given the seed."""

    def stage(samples: Iterator[dict]) -> Iterator[dict]:
        rank, _, worker, _ = wds.utils.pytorch_worker_info()
        rng = random.Random(hash((seed, epoch, rank, worker)))
        yield from wds.filters._shuffle(samples, bufsize=bufsize, initial=bufsize, rng=rng)

    return stage
