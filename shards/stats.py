"""Normalizer stats of a shard set, exact and exactly mergeable.

The train split's filtered state and actions are kept beside the shards as a sidecar,
`stats/<key>.npy`: float64, shape (D, N), one row per dim, columns ordered by
(episode_index, frame_index). It is the sufficient statistic: every number in the manifest's
`stats` (mean, std, min, max, q01, q99 by numpy's linear-interpolation quantile, sum, sum_sq,
count) is computed from it, so stats are exact (no quantile sketch), and merging sets
(partitions of one preprocess, or several tasks) is concatenating sidecars and recomputing.
Size: 8 bytes per dim per frame (~440 B/frame for top32 + 23 actions), well under 1% of a shard set.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from schemas.manifest import STAT_VECTORS, SidecarEntry, Stats

STATS_DIR = "stats"
QUANTILES = {"q01": 0.01, "q99": 0.99}  # in STAT_VECTORS order


def values_name(key: str) -> str:
    return f"{STATS_DIR}/{key}.npy"


def stats_of(values: np.ndarray) -> Stats:
    """Stats of (D, N) values, computed row by row in float64 (rows may be memory-mapped)."""
    dims, count = values.shape
    if count == 0:
        raise ValueError("cannot compute normalizer stats over zero frames (is the train split empty?)")
    columns = []  # per dim: its vectors' values, in STAT_VECTORS order; one row in memory at a time
    for d in range(dims):
        row = np.asarray(values[d], dtype=np.float64)
        quantiles = [np.quantile(row, q) for q in QUANTILES.values()]
        columns.append(
            [row.mean(), row.std(), row.min(), row.max(), *quantiles, row.sum(), np.square(row).sum()]
        )
    vectors = {name: tuple(float(c[i]) for c in columns) for i, name in enumerate(STAT_VECTORS)}
    return Stats(**vectors, count=int(count))


def compute_stats(values: np.ndarray) -> dict:
    """`stats_of` as the manifest's JSON writes it."""
    return stats_of(values).to_json()


def file_sha256(path: Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def write_stats_values(
    root: Path,
    key: str,
    chunks: Iterable[np.ndarray],
    total: int,
    dim: int,
    episodes: Iterable[tuple[int, int]] | None = None,
) -> SidecarEntry:
    """Write the sidecar of `key` from (N_i, dim) chunks in column order; returns its manifest entry.

    Written under a temporary name and renamed when complete. `episodes`, optional: the
    (episode_index, columns) of each episode in column order; recorded in the entry as
    `episodes` so that merging sets can put columns in (episode, frame) order without reading
    the shards (`b1k-shards merge` falls back to reading episode lengths from the shards).
    """
    name = values_name(key)
    path = Path(root) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float64, shape=(dim, total))
    filled = 0
    for chunk in chunks:
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2 or chunk.shape[1] != dim:
            raise ValueError(f"{name}: expected chunks of shape (N, {dim}), got {chunk.shape}")
        out[:, filled : filled + len(chunk)] = chunk.T
        filled += len(chunk)
    if filled != total:
        raise ValueError(f"{name}: expected {total} frames, got {filled}")
    out.flush()
    del out
    os.replace(tmp, path)
    index = None if episodes is None else tuple((int(e), int(n)) for e, n in episodes)
    if index is not None and sum(n for _, n in index) != total:
        raise ValueError(
            f"{name}: the episodes' columns add up to {sum(n for _, n in index)}, expected {total}"
        )
    return SidecarEntry(
        name=name,
        shape=(dim, total),
        dtype="float64",
        bytes=path.stat().st_size,
        sha256=file_sha256(path),
        episodes=index,
    )


def load_stats_values(path: Path) -> np.ndarray:
    """The (D, N) sidecar, memory-mapped (merging many tasks need not fit in memory)."""
    return np.load(path, mmap_mode="r")


FLOAT32_MAX = float(np.finfo(np.float32).max)  # stats reach the model as float32: larger is inf there
_RELATIVE_SLACK = 1e-6  # rounding of stats computed in float64 (and written as JSON)


def stats_problems(stats: Stats, key: str) -> list[str]:
    """What makes the stats of `key` (one manifest's `stats[key]`) impossible for any data, per dim:
    a value past float32; mean or q01/q99 outside [min, max]; a std above half the range, or below
    what `count` values spread over that range must have (range / sqrt(2 * count): a std of 0 or
    1e-300 on data that varies). Normalising with such stats divides by ~0 (a loss of 5e19), so a
    trainer refuses them. Stats of constant data (min == max, std 0) are consistent."""
    count = stats.count
    if count <= 0:
        return [f"stats.{key}.count is {count!r}: no frames"]
    problems = []
    columns = zip(stats.mean, stats.std, stats.min, stats.max, stats.q01, stats.q99, strict=True)
    for dim, (mean, std, low, high, q01, q99) in enumerate(columns):
        values = (mean, std, low, high, q01, q99)
        slack = _RELATIVE_SLACK * max(abs(low), abs(high), 1e-30)
        spread = high - low
        if max(abs(v) for v in values) > FLOAT32_MAX:
            wrong = "a value beyond float32's range"
        elif not (
            low - slack <= q01 <= q99 + slack and q99 <= high + slack and low - slack <= mean <= high + slack
        ):
            wrong = f"mean {mean:g}, q01 {q01:g} or q99 {q99:g} outside [min {low:g}, max {high:g}]"
        elif not spread / np.sqrt(2 * count) * (1 - _RELATIVE_SLACK) - slack <= std <= spread / 2 + slack:
            wrong = (
                f"std {std:g} is impossible for {count} values from {low:g} to {high:g} "
                f"(it must be {spread / np.sqrt(2 * count):.3g}..{spread / 2:.3g})"
            )
        else:
            continue
        problems.append(f"stats.{key} dim {dim}: {wrong}")
    return problems
