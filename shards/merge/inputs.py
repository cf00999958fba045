"""The inputs of `b1k-shards merge` and whether they can be merged, before a byte is written.

`check_compatible` refuses sets whose schema version, state preset/indices, horizon, cameras,
action layout, fps, frame stride or temporal alpha differ, naming the field and the values.
`group_inputs` groups the partition outputs of one preprocess (`b1k-preprocess --partition K/N`):
they must come from the same run configuration (source fingerprint and every option that decides
the samples) and all N must be present; every other input is a group of its own.
`check_disjoint` and `merge_tasks` check that episodes and task indices do not clash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from schemas.errors import B1kError
from schemas.manifest import Manifest, Partition
from shards.reader import ShardSet

# Options that only decide where and how the files were laid out, not what the samples are.
LAYOUT_OPTIONS = {
    "partition",
    "dataset_path",
    "shard_max_bytes",
    "shard_max_samples",
    "interleave_window",
    "workers",
}


class MergeError(B1kError, ValueError):
    """The inputs cannot be merged (or OUT cannot be written); the message says why."""


@dataclass
class MergeInput:
    """One set given to the merge, in command-line `order`."""

    shard_set: ShardSet
    order: int  # position on the command line

    @property
    def manifest(self) -> Manifest:
        return self.shard_set.manifest

    @property
    def location(self) -> str:
        return self.shard_set.location

    @property
    def partition(self) -> Partition | None:
        """Its partition, when it is one of several."""
        part = self.manifest.partition
        return part if part is not None and part.count > 1 else None

    def episodes(self) -> set[int]:
        return self.manifest.episodes


def _fields(manifest: Manifest) -> dict[str, object]:
    """The fields every merged input must share, by dotted name."""
    out: dict[str, object] = {
        "schema_version": manifest.schema_version,
        "state.layout": manifest.state_layout.name,
        "state.preset": manifest.state.preset,
        "state.indices": list(manifest.state.indices),
        "horizon": manifest.horizon,
        "cameras": sorted(manifest.cameras),
        "action.dim": manifest.action.dim,
        "action.names": list(manifest.action.names),
        "fps": manifest.fps,
        "frame_stride": manifest.frame_stride,
        "temporal.alpha": float(manifest.temporal.alpha),
    }
    for name, camera in sorted(manifest.cameras.items()):
        out |= {
            f"cameras.{name}.height": camera.height,
            f"cameras.{name}.width": camera.width,
            f"cameras.{name}.encoding": camera.encoding,
            f"cameras.{name}.video_key": camera.video_key,
        }
    return out


def check_compatible(inputs: list[MergeInput]) -> None:
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


def _run_config(inp: MergeInput) -> dict:
    """What makes partitions "the same run": source identity and every option that decides samples."""
    manifest = inp.manifest
    options = {k: v for k, v in (manifest.options or {}).items() if k not in LAYOUT_OPTIONS}
    return {
        "source.fingerprint": manifest.source.fingerprint,
        "source.codebase_version": manifest.source.codebase_version,
        "partition.count": inp.partition.count if inp.partition else None,
        "selected_episodes": manifest.selected_episodes,
        **{f"options.{k}": v for k, v in sorted(options.items())},
        **_fields(manifest),
    }


def group_inputs(inputs: list[MergeInput]) -> list[list[MergeInput]]:
    """Inputs grouped by run: the partitions of one preprocess form a group (checked complete);
    every other input is a group of its own."""
    groups: dict[str, list[MergeInput]] = {}
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
        count = group[0].partition.count
        seen: dict[int, MergeInput] = {}
        for inp in group:
            index = inp.partition.index
            if index in seen:
                raise MergeError(
                    f"partition {index}/{count} given twice: {seen[index].location} and {inp.location}"
                )
            seen[index] = inp
        missing = sorted(set(range(count)) - set(seen))
        if missing:
            incomplete.append((key, group, missing, count))
        group.sort(key=lambda i: i.partition.index)
    if incomplete:
        key, group, missing, count = incomplete[0]
        have = ", ".join(f"{i.partition.index}/{count} ({i.location})" for i in group)
        message = (
            f"cannot merge: partitions of one preprocess run are missing: "
            f"{', '.join(f'{k}/{count}' for k in missing)} (have {have})"
        )
        differs = _config_difference(group[0], [g[0] for k, g, _, _ in incomplete if k != key])
        if differs:
            message += f"; other partitions given differ in {differs}, so they are not the same run"
        raise MergeError(message)
    return [groups[key] for key in order]


def _config_difference(inp: MergeInput, others: list[MergeInput]) -> str | None:
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


def check_disjoint(inputs: list[MergeInput]) -> None:
    owner: dict[int, MergeInput] = {}
    for inp in inputs:
        for episode in sorted(inp.episodes()):
            if episode in owner:
                raise MergeError(
                    f"cannot merge: episode {episode} is in both {owner[episode].location} and {inp.location} "
                    "(merged sets must hold different episodes)"
                )
            owner[episode] = inp


def merge_tasks(inputs: list[MergeInput]) -> dict[int, str]:
    tasks: dict[int, str] = {}
    where: dict[int, str] = {}
    for inp in inputs:
        for index, text in inp.manifest.tasks.items():
            if index in tasks and tasks[index] != text:
                raise MergeError(
                    f"cannot merge: task {index} is {tasks[index]!r} in {where[index]} but {text!r} in {inp.location}"
                )
            tasks.setdefault(index, text)
            where.setdefault(index, inp.location)
    return dict(sorted(tasks.items()))
