"""The manifest of a merged set: the first input's schema fields (checked equal), the splits'
shards as placed in OUT, the merged stats and tasks, counts added up, and `merged_from` recording
each input (its location, partition, provenance and which of its shards became which).
"""

from __future__ import annotations

import copy
import datetime as dt

from schemas.manifest import SPLITS, validate_manifest
from schemas.sample import SCHEMA_VERSION
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


def _merge_extras(inputs: list[MergeInput], base: dict) -> None:
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
    inputs: list[MergeInput],
    groups: list[list[MergeInput]],
    placed: list[PlacedShard],
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
    _merge_task_details(inputs, base)
    _add_up_counts(base, "annotations", [inp.manifest.get("annotations") for inp in inputs])
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


def _merge_task_details(inputs: list[MergeInput], base: dict) -> None:
    """Each task's details (name, instruction, evaluator id) as its inputs record them; the task ids
    are checked not to clash by `merge_tasks`. Kept only when every input records them."""
    if not all("task_details" in inp.manifest for inp in inputs):
        base.pop("task_details", None)
        return
    details = {k: v for inp in inputs for k, v in inp.manifest["task_details"].items()}
    base["task_details"] = dict(sorted(details.items(), key=lambda kv: int(kv[0])))


def _add_up_counts(out: dict, key: str, values: list[dict | None]) -> None:
    """`out[key]`: the inputs' {name: count} maps added up, when every input has one."""
    if not values or not all(isinstance(v, dict) for v in values):
        out.pop(key, None)
        return
    totals: dict[str, int] = {}
    for value in values:
        for name, count in value.items():
            if isinstance(count, int):
                totals[name] = totals.get(name, 0) + count
    out[key] = dict(sorted(totals.items()))


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
    _add_up_counts(out, "skills", [e.get("skills") for e in entries])
    if all("episode_tasks" in e for e in entries):
        joined = {k: v for entry in entries for k, v in entry["episode_tasks"].items()}
        out["episode_tasks"] = dict(sorted(joined.items(), key=lambda kv: int(kv[0])))
    return out


def _merge_totals(inputs: list[MergeInput], placed: list[PlacedShard]) -> dict | None:
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
