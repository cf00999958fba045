"""`b1k-shards merge OUT SET...`: one shard set from several.

Two uses, freely mixed in one call:
- the partition outputs of one preprocess (`b1k-preprocess --partition K/N`): they must come from
  the same run configuration (source fingerprint and every option that decides the samples) and
  all N must be present; the result is the set one run over the whole selection would have
  written, up to the shard layout (same samples, same episodes and splits, same stats);
- sets of different tasks (or datasets) into one multi-task set: refused, naming the field and
  the values, when their schema version, state preset/indices, horizon, cameras, action layout,
  fps, frame stride or temporal alpha differ; their episodes must be disjoint.

Stats are exact: each input's stats sidecar (`stats/<key>.npy`, (D, N) train values) is cut into
per-episode column blocks, the blocks of all inputs are written in (episode, frame) order to the
merged sidecar, and the stats are recomputed from it (`shards.stats`). So a merge of partitions
gives the very sidecar, hence the very stats, of a single run. The per-episode column counts come
from the sidecar's `episodes` index when recorded, else from the episode lengths in the shards.

Shards are hardlinked when input and output share a filesystem (falling back to a copy, checked
against the input's sha256 as it streams), or downloaded from http(s)/`pipe:` inputs, under new
names `<split>-NNNNNN.tar`; each is written under a temporary name and renamed; the manifest is
written last. A non-empty OUT is refused without `overwrite`.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import errno
import itertools
import json
import os
import shutil
import sys
import tarfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from schemas.manifest import (
    MANIFEST_NAME,
    SPLITS,
    STAT_KEYS,
    dump_manifest,
    state_layout_of,
    validate_manifest,
)
from schemas.sample import JSON_MEMBER, SCHEMA_VERSION, parse_sample_key
from shards.lock import LOCK_NAME, FolderLock, FolderLockedError
from shards.reader import ShardSet, open_shard_set
from shards.scan import is_local, local_file_problem, open_stream
from shards.stats import STATS_DIR, compute_stats, episode_columns, load_stats_values, write_stats_values
from shards.tar import HashingReader
from shards.writer import TMP_SUFFIX, atomic_write_text, tool_version

TOOL = "b1k-shards merge"
# Options that only decide where and how the files were laid out, not what the samples are.
LAYOUT_OPTIONS = {
    "partition",
    "dataset_path",
    "shard_max_bytes",
    "shard_max_samples",
    "interleave_window",
    "workers",
}
# Top-level manifest keys the merge computes itself.
COMPUTED_KEYS = {
    "created_by",
    "splits",
    "stats",
    "stats_values",
    "tasks",
    "partition",
    "merged_from",
    "source",
    "options",
    "totals",
}
# b1k-preprocess's `totals`: counts that add up, and ratios recomputed from them.
ADDITIVE_TOTALS = ("episodes", "frames", "samples", "source_video_bytes")
RATIO_TOTALS = {
    "bytes_per_sample": ("bytes", "samples"),
    "source_video_bytes_per_frame": ("source_video_bytes", "frames"),
}
# Schema keys whose essential fields were checked equal (`_fields`): the first input's value is kept.
KEPT_KEYS = {"schema_version", "fps", "frame_stride", "cameras", "state", "action", "horizon", "temporal"}


class MergeError(ValueError):
    """The inputs cannot be merged (or OUT cannot be written); the message says why."""


@dataclass
class _Input:
    shard_set: ShardSet
    order: int  # position on the command line

    @property
    def manifest(self) -> dict:
        return self.shard_set.manifest

    @property
    def location(self) -> str:
        return self.shard_set.location

    @property
    def partition(self) -> dict | None:
        part = self.manifest.get("partition")
        return part if isinstance(part, dict) and int(part.get("count", 1)) > 1 else None

    def episodes(self) -> set[int]:
        return {e for split in SPLITS for e in self.manifest["splits"][split]["episodes"]}


# ------------------------------------------------------------------ compatibility
def _fields(manifest: dict) -> dict[str, object]:
    """The fields every merged input must share, by dotted name."""
    out: dict[str, object] = {
        "schema_version": manifest["schema_version"],
        "state.layout": state_layout_of(manifest).name,
        "state.preset": manifest["state"]["preset"],
        "state.indices": manifest["state"]["indices"],
        "horizon": manifest["horizon"],
        "cameras": sorted(manifest["cameras"]),
        "action.dim": manifest["action"]["dim"],
        "action.names": manifest["action"]["names"],
        "fps": manifest["fps"],
        "frame_stride": manifest["frame_stride"],
        "temporal.alpha": float(manifest["temporal"]["alpha"]),
    }
    for name, camera in sorted(manifest["cameras"].items()):
        for key in ("height", "width", "encoding", "video_key"):
            out[f"cameras.{name}.{key}"] = camera.get(key)
    return out


def check_compatible(inputs: list[_Input]) -> None:
    """Raise MergeError naming the first field whose value differs between inputs."""
    first = _fields(inputs[0].manifest)
    for other in inputs[1:]:
        fields = _fields(other.manifest)
        for name, value in first.items():
            if fields.get(name) != value:
                raise MergeError(
                    f"cannot merge: {name} differs: {_short(value)} in {inputs[0].location}, "
                    f"{_short(fields.get(name))} in {other.location}"
                )


def _short(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _run_config(inp: _Input) -> dict:
    """What makes partitions "the same run": source identity and every option that decides samples."""
    manifest = inp.manifest
    source = manifest.get("source", {})
    options = manifest.get("options")
    options = (
        {k: v for k, v in options.items() if k not in LAYOUT_OPTIONS} if isinstance(options, dict) else {}
    )
    return {
        "source.fingerprint": source.get("fingerprint"),
        "source.codebase_version": source.get("codebase_version"),
        "partition.count": inp.partition["count"] if inp.partition else None,
        "selected_episodes": manifest.get("selected_episodes"),
        **{f"options.{k}": v for k, v in sorted(options.items())},
        **_fields(manifest),
    }


def _groups(inputs: list[_Input]) -> list[list[_Input]]:
    """Inputs grouped by run: the partitions of one preprocess form a group (checked complete);
    every other input is a group of its own."""
    groups: dict[str, list[_Input]] = {}
    order: list[str] = []
    for inp in inputs:
        key = json.dumps(_run_config(inp), sort_keys=True) if inp.partition else f"set:{inp.order}"
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(inp)
    incomplete = []
    for key in order:
        group = groups[key]
        if not group[0].partition:
            continue
        count = int(group[0].partition["count"])
        seen: dict[int, _Input] = {}
        for inp in group:
            index = int(inp.partition["index"])
            if index in seen:
                raise MergeError(
                    f"partition {index}/{count} given twice: {seen[index].location} and {inp.location}"
                )
            seen[index] = inp
        missing = sorted(set(range(count)) - set(seen))
        if missing:
            incomplete.append((key, group, missing, count))
        group.sort(key=lambda i: int(i.partition["index"]))
    if incomplete:
        key, group, missing, count = incomplete[0]
        have = ", ".join(f"{int(i.partition['index'])}/{count} ({i.location})" for i in group)
        message = (
            f"cannot merge: partitions of one preprocess run are missing: "
            f"{', '.join(f'{k}/{count}' for k in missing)} (have {have})"
        )
        differs = _config_difference(group[0], [g[0] for k, g, _, _ in incomplete if k != key])
        if differs:
            message += f"; other partitions given differ in {differs}, so they are not the same run"
        raise MergeError(message)
    return [groups[key] for key in order]


def _config_difference(inp: _Input, others: list[_Input]) -> str | None:
    mine = _run_config(inp)
    for other in others:
        theirs = _run_config(other)
        if mine.get("source.fingerprint") != theirs.get("source.fingerprint"):
            continue
        diff = [k for k in mine if mine[k] != theirs.get(k)]
        if diff:
            k = diff[0]
            return f"{k} ({_short(mine[k])} in {inp.location}, {_short(theirs.get(k))} in {other.location})"
    return None


def _check_disjoint(inputs: list[_Input]) -> None:
    owner: dict[int, _Input] = {}
    for inp in inputs:
        for episode in sorted(inp.episodes()):
            if episode in owner:
                raise MergeError(
                    f"cannot merge: episode {episode} is in both {owner[episode].location} and {inp.location} "
                    "(merged sets must hold different episodes)"
                )
            owner[episode] = inp


def _merge_tasks(inputs: list[_Input]) -> dict[str, str]:
    tasks: dict[str, str] = {}
    where: dict[str, str] = {}
    for inp in inputs:
        for index, text in inp.manifest["tasks"].items():
            if index in tasks and tasks[index] != text:
                raise MergeError(
                    f"cannot merge: task {index} is {tasks[index]!r} in {where[index]} but {text!r} in {inp.location}"
                )
            tasks.setdefault(index, text)
            where.setdefault(index, inp.location)
    return dict(sorted(tasks.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else kv[0]))


# ------------------------------------------------------------------ output directory
_OURS_SUFFIXES = (".tar", TMP_SUFFIX)


def check_output(out: Path, inputs: list[_Input]) -> None:
    """OUT must be a folder (or absent) apart from every input (checked before OUT is locked)."""
    resolved = out.resolve()
    for inp in inputs:
        if inp.shard_set.kind == "local":
            root = Path(inp.shard_set.root).resolve()
            if resolved == root or root in resolved.parents or resolved in root.parents:
                raise MergeError(f"OUT {out} overlaps input {inp.location}; write the merged set elsewhere")
    if out.exists() and not out.is_dir():
        raise MergeError(f"OUT {out} exists and is not a directory")


def prepare_output(out: Path, overwrite: bool) -> None:
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
        (out / MANIFEST_NAME).unlink(missing_ok=True)  # first: from now on OUT is not a valid set
        for p in out.iterdir():
            if p.name == LOCK_NAME:  # ours, held for this merge
                continue
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


# ------------------------------------------------------------------ shards
def _copy_checked(url: str, entry: dict, dst: Path, location: str) -> str:
    tmp = dst.with_name(dst.name + TMP_SUFFIX)
    try:
        stream = open_stream(url)
    except Exception as exc:
        raise MergeError(f"cannot read input shard {url}: {exc}") from exc
    reader = HashingReader(stream)
    try:
        with open(tmp, "wb") as f:
            while block := reader.read(1 << 22):
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
        stream.close()
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MergeError(f"cannot read input shard {url}: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            stream.close()
    digest = reader.hexdigest() or ""
    if reader.bytes != entry["bytes"] or digest != entry["sha256"]:
        tmp.unlink(missing_ok=True)
        what = (
            f"size {reader.bytes} bytes, manifest says {entry['bytes']}"
            if reader.bytes != entry["bytes"]
            else "sha256 mismatch"
        )
        raise MergeError(
            f"input shard {url} is corrupt ({what}); check it with `b1k-shards verify {location}`"
        )
    os.replace(tmp, dst)
    return "copied"


def _transfer(inp: _Input, entry: dict, dst: Path, link: bool) -> str:
    """Put the shard `entry` of `inp` at `dst`: hardlink, else a checked copy/download."""
    url = inp.shard_set.url(entry["name"])
    if is_local(url):
        try:
            size = os.stat(url).st_size
        except FileNotFoundError:
            raise MergeError(
                f"input shard {url} is missing; check the set with `b1k-shards verify {inp.location}`"
            ) from None
        if size != entry["bytes"]:
            raise MergeError(
                f"input shard {url} has {size} bytes, its manifest says {entry['bytes']}; "
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
    return _copy_checked(url, entry, dst, inp.location)


@dataclass
class _Placed:
    inp: _Input
    split: str
    entry: dict  # input manifest entry
    name: str  # name in OUT


def _place_shards(inputs: list[_Input]) -> list[_Placed]:
    placed = []
    for split in SPLITS:
        index = 0
        for inp in inputs:
            for entry in inp.manifest["splits"][split]["shards"]:
                placed.append(_Placed(inp, split, entry, f"{split}-{index:06d}.tar"))
                index += 1
    return placed


# ------------------------------------------------------------------ stats
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
                    meta = json.loads(member.read()) if member is not None else {}
                    lengths[episode] = int(meta.get("episode_length", -1))
    return lengths, samples


def _blocks(inp: _Input, key: str, total: int, shard_paths: list[Path]) -> list[tuple[int, int, int]]:
    """(episode, start column, columns) of each episode in `inp`'s sidecar of `key`."""
    index = episode_columns(inp.manifest["stats_values"][key])
    train = sorted(inp.manifest["splits"]["train"]["episodes"])
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


def _interleaved(inputs: list[_Input]) -> bool:
    """Whether the inputs' train episodes interleave (so plain concatenation is not episode order)."""
    ranges = sorted(
        (min(t), max(t)) for t in (inp.manifest["splits"]["train"]["episodes"] for inp in inputs) if t
    )
    return any(a[1] >= b[0] for a, b in itertools.pairwise(ranges))


def _sidecar_path(inp: _Input, key: str, scratch: Path) -> Path:
    entry = inp.manifest["stats_values"][key]
    url = inp.shard_set.url(entry["name"])
    if is_local(url):  # read in place, once verified against its manifest entry
        if problem := local_file_problem(url, entry):
            raise MergeError(
                f"stats sidecar {url} of {inp.location} is corrupt ({problem}); it must be the file its "
                f"manifest lists (check the set with `b1k-shards verify {inp.location}`)"
            )
        return Path(url)
    path = scratch / f"input-{inp.order}-{Path(entry['name']).name}"
    _copy_checked(url, entry, path, inp.location)
    return path


def merge_stats(
    out: Path, inputs: list[_Input], shard_paths: dict[int, list[Path]], log: Callable[[str], None]
) -> tuple[dict, dict]:
    """The merged sidecars under `out/stats/` and the stats recomputed from them."""
    for inp in inputs:
        values = inp.manifest.get("stats_values") or {}
        missing = [k for k in STAT_KEYS if k not in values]
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
                if interleaved or episode_columns(inp.manifest["stats_values"][key]) is not None:
                    found = _blocks(inp, key, values.shape[1], shard_paths[inp.order])
                    blocks.extend((episode, i, start, count) for episode, start, count in found)
                else:  # the inputs' episode ranges do not interleave: one block per input is episode order
                    per_episode = False
                    first = min(inp.manifest["splits"]["train"]["episodes"], default=0)
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
            stats[key] = compute_stats(load_stats_values(out / entry["name"]))
            log(
                f"merge: stats {key}: {entry['shape'][0]} dims x {total} train frames from {len(inputs)} sets"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return stats, stats_values


# ------------------------------------------------------------------ manifest
def _merge_extras(inputs: list[_Input], base: dict) -> None:
    """Keys beyond the schema's: kept when every input agrees, lists concatenated, else dropped
    (each input's value stays in `merged_from`)."""
    keys = {k for inp in inputs for k in inp.manifest} - COMPUTED_KEYS - KEPT_KEYS
    for key in sorted(keys):
        values = [inp.manifest.get(key) for inp in inputs]
        if all(v == values[0] for v in values):
            base[key] = copy.deepcopy(values[0])
        elif all(isinstance(v, list) for v in values):
            merged: list = []
            for v in values:
                merged.extend(x for x in v if x not in merged)
            base[key] = merged
        else:
            base.pop(key, None)


def build_manifest(
    inputs: list[_Input],
    groups: list[list[_Input]],
    placed: list[_Placed],
    stats: dict,
    stats_values: dict,
    tasks: dict,
    command: str,
) -> dict:
    base = copy.deepcopy(inputs[0].manifest)
    _merge_extras(inputs, base)
    base["created_by"] = {
        "tool": TOOL,
        "version": tool_version(),
        "command": command,
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if len(groups) == 1:
        base["source"] = copy.deepcopy(inputs[0].manifest["source"])
        options = inputs[0].manifest.get("options")
        if isinstance(options, dict):
            base["options"] = {**options, "partition": None}
    else:
        base["source"] = {
            "kind": "merged",
            "sets": [copy.deepcopy(g[0].manifest["source"]) for g in groups],
        }
        base.pop("options", None)
    if "partition" in base:
        base["partition"] = None
    splits = {}
    for split in SPLITS:
        entries = [p for p in placed if p.split == split]
        split_entry: dict = {
            "episodes": sorted(e for inp in inputs for e in inp.manifest["splits"][split]["episodes"]),
            "shards": [{**p.entry, "name": p.name} for p in entries],
        }
        for counter in ("samples", "frames"):
            values = [inp.manifest["splits"][split].get(counter) for inp in inputs]
            if all(isinstance(v, int) for v in values):
                split_entry[counter] = sum(values)
        split_entry.update(_merge_split_tasks([inp.manifest["splits"][split] for inp in inputs]))
        splits[split] = split_entry
    base["splits"] = splits
    base["stats"] = stats
    base["stats_values"] = stats_values
    base["tasks"] = tasks
    base["merged_from"] = [
        {
            "location": inp.location,
            "partition": inp.manifest.get("partition"),
            "created_by": inp.manifest.get("created_by"),
            "source": inp.manifest.get("source"),
            "episodes": {split: len(inp.manifest["splits"][split]["episodes"]) for split in SPLITS},
            "shards": {
                split: [[p.entry["name"], p.name] for p in placed if p.inp is inp and p.split == split]
                for split in SPLITS
            },
            **{k: inp.manifest[k] for k in sorted(inp.manifest) if k not in base and k not in COMPUTED_KEYS},
            **({"options": inp.manifest["options"]} if "options" in inp.manifest and len(groups) > 1 else {}),
        }
        for inp in inputs
    ]
    totals = _merge_totals(inputs, placed)
    if totals is not None:
        base["totals"] = totals
    else:
        base.pop("totals", None)
    base["schema_version"] = SCHEMA_VERSION
    return validate_manifest(base)


def _merge_split_tasks(entries: list[dict]) -> dict:
    """A split's `tasks` (episodes and samples per task, added up) and `episode_tasks` (joined: the
    inputs' episodes are disjoint), each only when every input records it: a partial count would
    mislead `b1k-shards inspect` and `b1k-train --task-balance`. (Shard entries keep their own `tasks`.)"""
    out: dict = {}
    if all("tasks" in e for e in entries):
        totals: dict[str, dict[str, int]] = {}
        for entry in entries:
            for task, counts in entry["tasks"].items():
                total = totals.setdefault(task, {"episodes": 0, "samples": 0})
                total["episodes"] += counts["episodes"]
                total["samples"] += counts["samples"]
        out["tasks"] = dict(sorted(totals.items(), key=lambda kv: int(kv[0])))
    if all("episode_tasks" in e for e in entries):
        joined = {k: v for entry in entries for k, v in entry["episode_tasks"].items()}
        out["episode_tasks"] = dict(sorted(joined.items(), key=lambda kv: int(kv[0])))
    return out


def _merge_totals(inputs: list[_Input], placed: list[_Placed]) -> dict | None:
    """The inputs' `totals` (b1k-preprocess's summary) added up, with the merged set's shards and bytes."""
    all_totals = [inp.manifest.get("totals") for inp in inputs]
    if not all(isinstance(t, dict) for t in all_totals):
        return None
    out: dict = {}
    for key, value in all_totals[0].items():
        values = [t.get(key) for t in all_totals]
        if key in ADDITIVE_TOTALS and all(isinstance(v, int) for v in values):
            out[key] = sum(values)
        elif all(v == value for v in values) and key not in RATIO_TOTALS and key not in ("shards", "bytes"):
            out[key] = value
    out["shards"] = len(placed)
    out["bytes"] = sum(p.entry["bytes"] for p in placed)
    for key, (num, den) in RATIO_TOTALS.items():
        if key in all_totals[0] and num in out and out.get(den):
            out[key] = round(out[num] / out[den], 1)
    return out


# ------------------------------------------------------------------ the command
def merge_sets(
    out: str | Path,
    locations: list[str],
    *,
    overwrite: bool = False,
    link: bool = True,
    workers: int = 4,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Merge the sets at `locations` into a new set at `out`; returns the merged manifest."""
    log = log or (lambda message: print(message, file=sys.stderr))
    if not locations:
        raise MergeError("nothing to merge: give at least one SET")
    inputs = []
    for order, location in enumerate(locations):
        inputs.append(_Input(open_shard_set(location), order))
    roots = [
        i.shard_set.root if i.shard_set.kind != "local" else str(Path(i.shard_set.root).resolve())
        for i in inputs
    ]
    for i, root in enumerate(roots):
        if root in roots[:i]:
            raise MergeError(f"{locations[i]} is given twice")
    check_compatible(inputs)
    groups = _groups(inputs)
    ordered = [inp for group in groups for inp in group]
    _check_disjoint(ordered)
    tasks = _merge_tasks(ordered)
    for group in groups:
        part = group[0].partition
        what = f"partitions 0..{part['count'] - 1} of one run" if part else "a complete set"
        log(f"merge: {what}: {', '.join(i.location for i in group)}")

    out = Path(out)
    check_output(out, inputs)
    try:
        with FolderLock(out, "b1k-shards merge"):  # held until the manifest is written
            return _merge_into(
                out, ordered, groups, tasks,
                overwrite=overwrite, link=link, workers=workers, command=command, log=log,
            )  # fmt: skip
    except FolderLockedError as exc:
        raise MergeError(f"OUT {exc}") from None


def _merge_into(
    out: Path,
    ordered: list[_Input],
    groups: list[list[_Input]],
    tasks: dict,
    *,
    overwrite: bool,
    link: bool,
    workers: int,
    command: str | None,
    log: Callable[[str], None],
) -> dict:
    """The merge proper, under OUT's lock: prepare OUT, place the shards, merge stats, manifest last."""
    prepare_output(out, overwrite)
    placed = _place_shards(ordered)
    outcomes: dict[str, int] = {}

    def move(p: _Placed) -> str:
        return _transfer(p.inp, p.entry, out / p.name, link)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for how in pool.map(move, placed):
            outcomes[how] = outcomes.get(how, 0) + 1
    log(
        f"merge: {len(placed)} shards into {out} ({', '.join(f'{n} {how}' for how, n in sorted(outcomes.items()))})"
    )

    shard_paths = {
        inp.order: [out / p.name for p in placed if p.inp is inp and p.split == "train"] for inp in ordered
    }
    stats, stats_values = merge_stats(out, ordered, shard_paths, log)
    manifest = build_manifest(
        ordered, groups, placed, stats, stats_values, tasks, command or " ".join(sys.argv)
    )
    atomic_write_text(out / MANIFEST_NAME, dump_manifest(manifest))
    samples = {split: sum(p.entry["samples"] for p in placed if p.split == split) for split in SPLITS}
    log(
        f"merge: wrote {out / MANIFEST_NAME}: {len(manifest['splits']['train']['episodes'])} train / "
        f"{len(manifest['splits']['val']['episodes'])} val episodes, {samples['train']} / {samples['val']} samples, "
        f"{len(tasks)} task{'s' if len(tasks) != 1 else ''}"
    )
    return manifest


__all__ = ["MergeError", "check_compatible", "merge_sets"]
