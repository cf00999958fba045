"""Exact stats for a merged set, from the inputs' stats sidecars.

Each input's stats sidecar (`stats/<key>.npy`, (D, N) train values) is cut into per-episode column
blocks, the blocks of all inputs are written in (episode, frame) order to the merged sidecar, and
the stats are recomputed from it (`shards.stats`). So a merge of partitions gives the very
sidecar, hence the very stats, of a single run. The per-episode column counts come from the
sidecar's `episodes` index when recorded, else from the episode lengths in the merged shards.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from schemas.manifest import STAT_KEYS, ManifestStats, SidecarEntry
from schemas.sample import JSON_MEMBER, SampleJsonError, SampleMeta, parse_sample_key
from shards.merge.inputs import MergeError, MergeInput
from shards.merge.shards import copy_checked
from shards.scan import is_local, local_file_problem
from shards.stats import STATS_DIR, load_stats_values, stats_of, write_stats_values


def _episode_lengths_from_shards(paths: list[Path]) -> tuple[dict[int, int], dict[int, int]]:
    """(episode -> episode_length from the json, episode -> number of samples) over local tar files."""
    lengths: dict[int, int] = {}
    samples: dict[int, int] = {}
    for path in paths:
        with tarfile.open(path, "r:") as tar:  # seeks over the members it does not read
            for info in tar:
                if not info.isreg() or "." not in info.name:
                    continue
                key, suffix = info.name.split(".", 1)
                if suffix != JSON_MEMBER:
                    continue
                episode, _ = parse_sample_key(key.rsplit("/", 1)[-1])
                samples[episode] = samples.get(episode, 0) + 1
                if episode not in lengths:
                    member = tar.extractfile(info)
                    lengths[episode] = _episode_length(
                        json.loads(member.read()) if member is not None else None
                    )
    return lengths, samples


def _episode_length(data: object) -> int:
    """A sample json's `episode_length`; -1 when the json is off the schema."""
    try:
        return SampleMeta.from_json(data).episode_length
    except SampleJsonError:
        return -1


def _sidecar(inp: MergeInput, key: str) -> SidecarEntry:
    sidecar = inp.manifest.sidecar(key)
    assert sidecar is not None, "checked by merge_stats"
    return sidecar


def _blocks(inp: MergeInput, key: str, total: int, shard_paths: list[Path]) -> list[tuple[int, int, int]]:
    """(episode, start column, columns) of each episode in `inp`'s sidecar of `key`."""
    index = _sidecar(inp, key).episodes
    train = sorted(inp.manifest.splits.train.episodes)
    if index is None:
        lengths, samples = _episode_lengths_from_shards(shard_paths)
        missing = [e for e in train if e not in lengths]
        if missing:
            raise MergeError(
                f"{inp.location}: train episodes {missing[:10]} have no samples in its train shards"
            )
        if sum(lengths[e] for e in train) == total:
            index = [(e, lengths[e]) for e in train]
        elif sum(samples[e] for e in train) == total:
            index = [(e, samples[e]) for e in train]
        else:
            raise MergeError(
                f"{inp.location}: cannot tell which columns of stats sidecar {key!r} belong to which episode "
                f"({total} columns; its train episodes have {sum(lengths[e] for e in train)} frames and "
                f"{sum(samples[e] for e in train)} samples)"
            )
    if sum(n for _, n in index) != total:
        raise MergeError(
            f"{inp.location}: the episodes index of stats sidecar {key!r} does not add up to {total} columns"
        )
    out, start = [], 0
    for episode, count in index:
        out.append((episode, start, count))
        start += count
    return out


def _interleaved(inputs: list[MergeInput]) -> bool:
    """Whether the inputs' train episodes interleave (so plain concatenation is not episode order)."""
    ranges = sorted((min(t), max(t)) for t in (inp.manifest.splits.train.episodes for inp in inputs) if t)
    return any(a[1] >= b[0] for a, b in itertools.pairwise(ranges))


def _sidecar_path(inp: MergeInput, key: str, scratch: Path) -> Path:
    entry = _sidecar(inp, key)
    url = inp.shard_set.url(entry.name)
    if is_local(url):  # read in place, once verified against its manifest entry
        if problem := local_file_problem(url, entry):
            raise MergeError(
                f"stats sidecar {url} of {inp.location} is corrupt ({problem}); it must be the file its "
                f"manifest lists (check the set with `b1k-shards verify {inp.location}`)"
            )
        return Path(url)
    path = scratch / f"input-{inp.order}-{Path(entry.name).name}"
    copy_checked(url, entry, path, inp.location)
    return path


def merge_stats(
    out: Path, inputs: list[MergeInput], shard_paths: dict[int, list[Path]], log: Callable[[str], None]
) -> tuple[ManifestStats, dict[str, SidecarEntry]]:
    """The stats recomputed from the merged sidecars, and those sidecars (under `out/stats/`)."""
    for inp in inputs:
        missing = [k for k in STAT_KEYS if inp.manifest.sidecar(k) is None]
        if missing:
            raise MergeError(
                f"{inp.location} has no stats sidecar for {missing} (stats_values); exact merging needs "
                "the train values, so re-run b1k-preprocess for it"
            )
    scratch = out / STATS_DIR / ".inputs"
    scratch.mkdir(parents=True, exist_ok=True)
    interleaved = _interleaved(inputs)
    stats, stats_values = {}, {}
    try:
        for key in STAT_KEYS:
            arrays, blocks, per_episode = [], [], True
            for i, inp in enumerate(inputs):
                values = load_stats_values(_sidecar_path(inp, key, scratch))
                arrays.append(values)
                if interleaved or _sidecar(inp, key).episodes is not None:
                    found = _blocks(inp, key, values.shape[1], shard_paths[inp.order])
                    blocks.extend((episode, i, start, count) for episode, start, count in found)
                else:  # the inputs' episode ranges do not interleave: one block per input is episode order
                    per_episode = False
                    first = min(inp.manifest.splits.train.episodes, default=0)
                    blocks.append((first, i, 0, values.shape[1]))
            blocks.sort(key=lambda block: block[0])
            dims = {a.shape[0] for a in arrays}
            if len(dims) != 1:
                raise MergeError(f"stats sidecars of {key!r} have different dims {sorted(dims)}")
            total = sum(block[3] for block in blocks)

            def chunks(blocks=blocks, arrays=arrays) -> Iterator[np.ndarray]:
                for _, i, start, count in blocks:
                    yield np.asarray(arrays[i][:, start : start + count]).T

            episodes = [(e, n) for e, _, _, n in blocks] if per_episode else None
            entry = write_stats_values(out, key, chunks(), total, dims.pop(), episodes=episodes)
            del arrays
            stats_values[key] = entry
            stats[key] = stats_of(load_stats_values(out / entry.name))
            log(
                f"merge: stats {key}: {len(stats[key].mean)} dims x {total} train frames from {len(inputs)} sets"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return ManifestStats(*(stats[key] for key in STAT_KEYS)), stats_values
