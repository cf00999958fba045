"""The shard set's `manifest.json`: what a run wrote, and how, for the trainer and `b1k-shards`.

`build_manifest` gathers it (the format: `schemas.manifest` and DESIGN.md); `compute_totals` sums
the sizes; `summarize` logs the run's one-line summary from it.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys

from preprocess.episode import EpisodeResult
from preprocess.images import RESIZE_METHOD
from preprocess.plan import Plan, PreprocessConfig
from preprocess.skills import QUIRKS
from schemas.r1pro import ACTION_DIM, action_names
from schemas.sample import SCHEMA_VERSION, TEMPORAL_FORMULA, image_member
from schemas.tasks import TaskInfo
from shards.writer import tool_version

log = logging.getLogger(__name__)

TOOL = "b1k-preprocess"


def build_manifest(
    plan: Plan,
    config: PreprocessConfig,
    results: dict[int, EpisodeResult],
    skipped: list[dict],
    splits: dict[str, dict],
    stats: dict,
    stats_values: dict,
) -> dict:
    """The manifest of a finished run (`splits`, `stats`, `stats_values`: from the final stage)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "created_by": _created_by(config),
        "source": _source(plan),
        "fps": plan.source.fps,
        "frame_stride": config.frame_stride,
        "image_size": plan.image_size.describe(),
        "cameras": _cameras(plan, config),
        "state": _state(plan),
        "action": {"dim": ACTION_DIM, "names": action_names()},
        "horizon": config.horizon,
        "temporal": {"alpha": float(config.temporal_alpha), "formula": TEMPORAL_FORMULA},
        "stats": stats,
        "stats_values": stats_values,
        "stats_scope": "train split, every frame (full frame rate, independent of --frame-stride), float64; "
        "q01/q99 exact (numpy linear interpolation over the sidecar values)",
        "splits": splits,
        "tasks": {str(t.task_id): t.prompt for t in _tasks_written(plan, results)},
        "task_details": {str(t.task_id): t.to_json() for t in _tasks_written(plan, results)},
        "prompt": config.prompt,
        "annotations": _annotation_counts(results),
        "seed": config.seed,
        "partition": _partition(plan),
        "selected_episodes": len(plan.selected),
        "skipped_episodes": skipped,
        "interleave": {
            "scheme": "seeded permutation of episodes; window of open episodes; next sample drawn from a window "
            "episode with probability proportional to its remaining samples",
            "window": config.interleave_window,
        },
        "options": config.fingerprint(),
        "warnings": plan.warnings,
        "totals": compute_totals(splits, results),
    }


def _tasks_written(plan: Plan, results: dict[int, EpisodeResult]) -> list[TaskInfo]:
    """The tasks of the episodes written (not every task the dataset's meta files describe), by id:
    a checkpoint's task table is what it was trained on."""
    ids = {r.task_index for r in results.values()}
    return sorted((t for t in plan.tasks.values() if t.task_id in ids), key=lambda t: t.task_id)


def _annotation_counts(results: dict[int, EpisodeResult]) -> dict:
    """How the skill annotations read: episodes with a skill, and each quirk met (preprocess.skills)."""
    counts = {"episodes_with_skills": sum(1 for r in results.values() if r.skills)}
    for quirk in QUIRKS:
        counts[quirk] = sum(r.skill_quirks.get(quirk, 0) for r in results.values())
    return counts


def _created_by(config: PreprocessConfig) -> dict:
    return {
        "tool": TOOL,
        "version": tool_version(),
        "command": config.command_line or " ".join(sys.argv),
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _source(plan: Plan) -> dict:
    source = plan.source
    return {
        "path": str(source.root.resolve()),
        "codebase_version": source.version,
        "fingerprint": source.fingerprint(),
        "fingerprint_of": "sha256 of the files under meta/ (names and contents)",
        "robot_type": source.info.get("robot_type"),
        "total_episodes": len(source.episodes),
    }


def _cameras(plan: Plan, config: PreprocessConfig) -> dict:
    return {
        c.name: {
            "video_key": c.video_key,
            "member": image_member(c.name),
            "height": c.height,
            "width": c.width,
            "source_height": plan.native_sizes[c.name][0],
            "source_width": plan.native_sizes[c.name][1],
            "encoding": "jpeg",
            "quality": config.jpeg_quality,
            "chroma_subsampling": "4:2:0",
            "resize": "none" if (c.height, c.width) == plan.native_sizes[c.name] else RESIZE_METHOD,
        }
        for c in plan.cameras
    }


def _state(plan: Plan) -> dict:
    selection = plan.selection
    return {
        "preset": selection.preset,
        "indices": list(selection.indices),
        "names": list(selection.names),
        "layout": selection.layout.name,
        "source_dim": selection.layout.dim,
        "not_standard_track": list(selection.not_standard_track),
    }


def _partition(plan: Plan) -> dict | None:
    if plan.partition is None:
        return None
    return {
        "index": plan.partition[0],
        "count": plan.partition[1],
        "rule": "sorted selected episodes [index::count]",
    }


def compute_totals(splits: dict, results: dict[int, EpisodeResult]) -> dict:
    """The set's sizes, and how they compare with the source's RGB video."""
    frames = sum(r.length for r in results.values())
    samples = sum(s["samples"] for s in splits.values())
    shard_bytes = sum(sh["bytes"] for s in splits.values() for sh in s["shards"])
    source_bytes = sum(r.source_video_bytes for r in results.values())
    return {
        "episodes": len(results),
        "frames": frames,
        "samples": samples,
        "shards": sum(len(s["shards"]) for s in splits.values()),
        "bytes": shard_bytes,
        "bytes_per_sample": round(shard_bytes / samples, 1) if samples else 0.0,
        "source_video_bytes": source_bytes,
        "source_video_bytes_per_frame": round(source_bytes / frames, 1) if frames else 0.0,
        "source_video_bytes_note": "RGB camera videos only; v3.0 files shared by episodes are apportioned by duration",
    }


def summarize(manifest: dict, elapsed: float, frames_this_run: int) -> dict:
    """The final summary line (and dict): frames, shards, bytes, bytes/frame vs the source video, time."""
    totals = manifest["totals"]
    summary = {
        **{k: v for k, v in totals.items() if not k.endswith("_note")},
        "seconds": elapsed,
        "frames_this_run": frames_this_run,
        "frames_per_second": frames_this_run / elapsed if elapsed else 0.0,
    }
    source = totals["source_video_bytes_per_frame"]
    ratio = f"x{totals['bytes_per_sample'] / source:.1f}" if source else "n/a"
    log.info(
        "done: %d episodes, %d frames -> %d samples in %d shards, %.1f MB; %.0f B/sample vs %.0f B/frame of "
        "source RGB video (%s); %.1f s, %d frames decoded in this run (%.1f frames/s)",
        totals["episodes"], totals["frames"], totals["samples"], totals["shards"], totals["bytes"] / 1e6,
        totals["bytes_per_sample"], source, ratio, elapsed, frames_this_run, summary["frames_per_second"],
    )  # fmt: skip
    return summary
