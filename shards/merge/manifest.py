"""The manifest of a merged set: the first input's schema fields (checked equal), the splits'
shards as placed in OUT, the merged stats and tasks, counts added up, and `merged_from` recording
each input (its location, partition, provenance and which of its shards became which).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from dataclasses import replace

from schemas.manifest import (
    SPLITS,
    CreatedBy,
    Manifest,
    ManifestStats,
    SidecarEntry,
    Source,
    Split,
    TaskCount,
)
from schemas.sample import SCHEMA_VERSION
from schemas.tasks import TaskInfo
from shards.merge.inputs import MergeInput
from shards.merge.shards import PlacedShard
from shards.writer import tool_version

TOOL = "b1k-shards merge"  # `created_by.tool` of a merged set, and the holder named by OUT's lock
# Top-level manifest keys the merge computes itself.
COMPUTED_KEYS = {
    "created_by",
    "splits",
    "stats",
    "stats_values",
    "tasks",
    "task_details",
    "annotations",
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
# Schema keys whose essential fields were checked equal (`check_compatible`): the first input's value is kept.
KEPT_KEYS = {"schema_version", "fps", "frame_stride", "cameras", "state", "action", "horizon", "temporal"}


def _beyond_schema(manifest: Manifest) -> dict:
    """The keys a merge neither computes nor keeps from the first input (b1k-preprocess's record of the
    run and keys of newer tools), as the manifest's JSON holds them."""
    return {k: v for k, v in manifest.to_json().items() if k not in COMPUTED_KEYS | KEPT_KEYS}


def _merge_extras(inputs: list[MergeInput]) -> dict:
    """Keys beyond the schema's: kept when every input agrees, lists concatenated, else dropped
    (each input's value stays in `merged_from`)."""
    per_input = [_beyond_schema(inp.manifest) for inp in inputs]
    out: dict = {}
    for key in sorted({k for keys in per_input for k in keys}):
        values = [keys.get(key) for keys in per_input]
        if all(v == values[0] for v in values):
            out[key] = copy.deepcopy(values[0])
        elif all(isinstance(v, list) for v in values):
            merged: list = []
            for v in values:
                merged.extend(x for x in v if x not in merged)
            out[key] = merged
    return out


def build_manifest(
    inputs: list[MergeInput],
    groups: list[list[MergeInput]],
    placed: list[PlacedShard],
    stats: ManifestStats,
    stats_values: dict[str, SidecarEntry],
    tasks: dict[int, str],
    command: str,
) -> Manifest:
    """The merged set's manifest: the first input's schema fields, the rest computed from all inputs."""
    first = inputs[0].manifest.to_json()
    merged = _merge_extras(inputs) | {k: v for k, v in first.items() if k in KEPT_KEYS}
    created_by = CreatedBy(
        TOOL, tool_version(), command, dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    details = _merge_task_details(inputs)
    annotations = _add_up_counts([inp.manifest.annotations for inp in inputs])
    totals = _merge_totals(inputs, placed)
    merged |= {
        "schema_version": SCHEMA_VERSION,
        "created_by": created_by.to_json(),
        **_source_and_options(inputs, groups),
        **({"partition": None} if "partition" in first else {}),  # a merged set is no partition
        "splits": {split: _merged_split(split, inputs, placed).to_json() for split in SPLITS},
        "stats": stats.to_json(),
        "stats_values": {key: sidecar.to_json() for key, sidecar in stats_values.items()},
        "tasks": {str(task): prompt for task, prompt in tasks.items()},
        **(
            {}
            if details is None
            else {"task_details": {str(t): info.to_json() for t, info in details.items()}}
        ),
        **({} if annotations is None else {"annotations": annotations}),
        **({} if totals is None else {"totals": totals}),
    }
    merged["merged_from"] = [_merged_from(inp, placed, merged, len(groups) > 1) for inp in inputs]
    return Manifest.from_json(merged)


def _source_and_options(inputs: list[MergeInput], groups: list[list[MergeInput]]) -> dict:
    """One run's partitions keep its source and options (no partition); several runs record each source."""
    first = inputs[0].manifest
    if len(groups) == 1:
        options = None if first.options is None else {**first.options, "partition": None}
        return {"source": first.source.to_json(), **({} if options is None else {"options": options})}
    return {"source": Source(kind="merged", sets=tuple(g[0].manifest.source for g in groups)).to_json()}


def _merged_split(split: str, inputs: list[MergeInput], placed: list[PlacedShard]) -> Split:
    """A split of the merged set: its shards as placed in OUT, its episodes and counts added up (each
    count only when every input records it: a partial count would mislead `b1k-shards inspect` and
    `b1k-train --task-balance`). Shard entries keep their own task counts."""
    parts = [inp.manifest.split(split) for inp in inputs]
    samples, frames = ([getattr(p, counter) for p in parts] for counter in ("samples", "frames"))
    return Split(
        episodes=tuple(sorted(e for part in parts for e in part.episodes)),
        shards=tuple(replace(p.entry, name=p.name) for p in placed if p.split == split),
        samples=sum(samples) if None not in samples else None,
        frames=sum(frames) if None not in frames else None,
        tasks=_merge_task_counts(parts),
        episode_tasks=_join([part.episode_tasks for part in parts]),
        skills=_add_up_counts([part.skills for part in parts]),
    )


def _merge_task_counts(parts: list[Split]) -> dict[int, TaskCount] | None:
    """Episodes and samples per task, added up."""
    if any(part.tasks is None for part in parts):
        return None
    totals: dict[int, TaskCount] = {}
    for part in parts:
        for task, counts in (part.tasks or {}).items():
            total = totals.get(task, TaskCount(0, 0))
            totals[task] = TaskCount(total.episodes + counts.episodes, total.samples + counts.samples)
    return dict(sorted(totals.items()))


def _join[K, V](maps: list[Mapping[K, V] | None]) -> dict[K, V] | None:
    """The maps joined (their keys are disjoint: the inputs' episodes and task ids are checked so), when
    every input records one."""
    if any(m is None for m in maps):
        return None
    return dict(sorted((k, v) for m in maps for k, v in (m or {}).items()))


def _merge_task_details(inputs: list[MergeInput]) -> dict[int, TaskInfo] | None:
    """Each task's details (name, instruction, evaluator id) as its inputs record them; the task ids
    are checked not to clash by `merge_tasks`. Kept only when every input records them."""
    return _join([inp.manifest.task_details for inp in inputs])


def _add_up_counts(values: list[Mapping[str, int] | None]) -> dict[str, int] | None:
    """The inputs' {name: count} maps added up, when every input has one."""
    if not values or any(v is None for v in values):
        return None
    totals: dict[str, int] = {}
    for value in values:
        for name, count in (value or {}).items():
            totals[name] = totals.get(name, 0) + count
    return dict(sorted(totals.items()))


def _merged_from(inp: MergeInput, placed: list[PlacedShard], merged: dict, several_runs: bool) -> dict:
    """What the merged set records of one input: its location, partition and provenance, its episodes,
    which of its shards became which, and its own values of keys the merged set does not keep."""
    manifest, data = inp.manifest, inp.manifest.to_json()
    record = {
        "location": inp.location,
        "partition": None if manifest.partition is None else manifest.partition.to_json(),
        "created_by": manifest.created_by.to_json(),
        "source": manifest.source.to_json(),
        "episodes": {name: len(split.episodes) for name, split in manifest.splits},
        "shards": {
            split: [[p.entry.name, p.name] for p in placed if p.inp is inp and p.split == split]
            for split in SPLITS
        },
    }
    record |= {k: data[k] for k in sorted(data) if k not in merged and k not in COMPUTED_KEYS}
    if manifest.options is not None and several_runs:
        record["options"] = dict(manifest.options)
    return record


def _merge_totals(inputs: list[MergeInput], placed: list[PlacedShard]) -> dict | None:
    """The inputs' `totals` (b1k-preprocess's summary) added up, with the merged set's shards and bytes."""
    if any(inp.manifest.totals is None for inp in inputs):
        return None
    all_totals = [inp.manifest.totals.to_json() for inp in inputs if inp.manifest.totals is not None]
    out: dict = {}
    for key, value in all_totals[0].items():
        values = [t.get(key) for t in all_totals]
        if key in ADDITIVE_TOTALS and all(isinstance(v, int) for v in values):
            out[key] = sum(values)
        elif all(v == value for v in values) and key not in RATIO_TOTALS and key not in ("shards", "bytes"):
            out[key] = value
    out |= {"shards": len(placed), "bytes": sum(p.entry.bytes for p in placed)}
    for key, (num, den) in RATIO_TOTALS.items():
        if key in all_totals[0] and num in out and out.get(den):
            out[key] = round(out[num] / out[den], 1)
    return out
