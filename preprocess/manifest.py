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
from schemas.manifest import (
    ActionEntry,
    CameraEntry,
    CreatedBy,
    Manifest,
    ManifestStats,
    Partition,
    SidecarEntry,
    Source,
    Splits,
    StateEntry,
    Temporal,
    Totals,
)
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
    splits: Splits,
    stats: ManifestStats,
    stats_values: dict[str, SidecarEntry],
) -> Manifest:
    """The manifest of a finished run (`splits`, `stats`, `stats_values`: from the final stage)."""
    tasks = _tasks_written(plan, results)
    return Manifest(
        schema_version=SCHEMA_VERSION,
        created_by=_created_by(config),
        source=_source(plan),
        fps=plan.source.fps,
        frame_stride=config.frame_stride,
        cameras=_cameras(plan, config),
        state=_state(plan),
        action=ActionEntry(ACTION_DIM, tuple(action_names())),
        horizon=config.horizon,
        temporal=Temporal(float(config.temporal_alpha), TEMPORAL_FORMULA),
        stats=stats,
        stats_values=stats_values,
        splits=splits,
        tasks={t.task_id: t.prompt for t in tasks},
        task_details={t.task_id: t for t in tasks},
        prompt=config.prompt,
        annotations=_annotation_counts(results),
        partition=_partition(plan),
        options=config.fingerprint(),
        warnings=tuple(plan.warnings),
        totals=compute_totals(splits, results),
        selected_episodes=len(plan.selected),
        extras=_record_of_the_run(plan, config, skipped),
    )


def _record_of_the_run(plan: Plan, config: PreprocessConfig, skipped: list[dict]) -> dict:
    """What the manifest records of the run beyond the schema's fields (kept as written by readers)."""
    unset = {"prompt": config.prompt, "partition": plan.partition}
    return {
        # written as null when unset, as every set since these keys exist (`to_json` omits a None field)
        **{key: None for key, value in unset.items() if value is None},
        "image_size": plan.image_size.describe(),
        "stats_scope": "train split, every frame (full frame rate, independent of --frame-stride), float64; "
        "q01/q99 exact (numpy linear interpolation over the sidecar values)",
        "seed": config.seed,
        "skipped_episodes": skipped,
        "interleave": {
            "scheme": "seeded permutation of episodes; window of open episodes; next sample drawn from a window "
            "episode with probability proportional to its remaining samples",
            "window": config.interleave_window,
        },
    }


def _tasks_written(plan: Plan, results: dict[int, EpisodeResult]) -> list[TaskInfo]:
    """The tasks of the episodes written (not every task the dataset's meta files describe), by id:
    a checkpoint's task table is what it was trained on."""
    ids = {r.task_index for r in results.values()}
    return sorted((t for t in plan.tasks.values() if t.task_id in ids), key=lambda t: t.task_id)


def _annotation_counts(results: dict[int, EpisodeResult]) -> dict[str, int]:
    """How the skill annotations read: episodes with a skill, and each quirk met (preprocess.skills)."""
    counts = {"episodes_with_skills": sum(1 for r in results.values() if r.skills)}
    for quirk in QUIRKS:
        counts[quirk] = sum(r.skill_quirks.get(quirk, 0) for r in results.values())
    return counts


def _created_by(config: PreprocessConfig) -> CreatedBy:
    return CreatedBy(
        tool=TOOL,
        version=tool_version(),
        command=config.command_line or " ".join(sys.argv),
        time=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def _source(plan: Plan) -> Source:
    source = plan.source
    robot_type = source.info.get("robot_type")
    return Source(
        path=str(source.root.resolve()),
        codebase_version=source.version,
        fingerprint=source.fingerprint(),
        robot_type=robot_type,
        extras={
            "fingerprint_of": "sha256 of the files under meta/ (names and contents)",
            "total_episodes": len(source.episodes),
            **({"robot_type": None} if robot_type is None else {}),  # written as null when unknown
        },
    )


def _cameras(plan: Plan, config: PreprocessConfig) -> dict[str, CameraEntry]:
    return {
        c.name: CameraEntry(
            video_key=c.video_key,
            member=image_member(c.name),
            height=c.height,
            width=c.width,
            source_height=plan.native_sizes[c.name][0],
            source_width=plan.native_sizes[c.name][1],
            encoding="jpeg",
            quality=config.jpeg_quality,
            chroma_subsampling="4:2:0",
            resize="none" if (c.height, c.width) == plan.native_sizes[c.name] else RESIZE_METHOD,
        )
        for c in plan.cameras
    }


def _state(plan: Plan) -> StateEntry:
    selection = plan.selection
    return StateEntry(
        preset=selection.preset,
        indices=tuple(selection.indices),
        names=tuple(selection.names),
        layout_name=selection.layout.name,
        source_dim=selection.layout.dim,
        not_standard_track=tuple(selection.not_standard_track),
    )


def _partition(plan: Plan) -> Partition | None:
    if plan.partition is None:
        return None
    return Partition(plan.partition[0], plan.partition[1], "sorted selected episodes [index::count]")


def compute_totals(splits: Splits, results: dict[int, EpisodeResult]) -> Totals:
    """The set's sizes, and how they compare with the source's RGB video."""
    frames = sum(r.length for r in results.values())
    samples = sum(split.shard_samples for _, split in splits)
    shard_bytes = sum(shard.bytes for _, shard in splits.shards)
    source_bytes = sum(r.source_video_bytes for r in results.values())
    return Totals(
        episodes=len(results),
        frames=frames,
        samples=samples,
        shards=sum(1 for _ in splits.shards),
        bytes=shard_bytes,
        bytes_per_sample=round(shard_bytes / samples, 1) if samples else 0.0,
        source_video_bytes=source_bytes,
        source_video_bytes_per_frame=round(source_bytes / frames, 1) if frames else 0.0,
        source_video_bytes_note="RGB camera videos only; v3.0 files shared by episodes are apportioned by duration",
    )


def summarize(manifest: Manifest, elapsed: float, frames_this_run: int) -> dict:
    """The final summary line (and dict): frames, shards, bytes, bytes/frame vs the source video, time."""
    totals = manifest.totals or Totals()
    summary = {
        **{k: v for k, v in totals.to_json().items() if not k.endswith("_note")},
        "seconds": elapsed,
        "frames_this_run": frames_this_run,
        "frames_per_second": frames_this_run / elapsed if elapsed else 0.0,
    }
    source = totals.source_video_bytes_per_frame
    ratio = f"x{(totals.bytes_per_sample or 0) / source:.1f}" if source else "n/a"
    log.info(
        "done: %d episodes, %d frames -> %d samples in %d shards, %.1f MB; %.0f B/sample vs %.0f B/frame of "
        "source RGB video (%s); %.1f s, %d frames decoded in this run (%.1f frames/s)",
        totals.episodes, totals.frames, totals.samples, totals.shards, (totals.bytes or 0) / 1e6,
        totals.bytes_per_sample, source, ratio, elapsed, frames_this_run, summary["frames_per_second"],
    )  # fmt: skip
    return summary
