"""`b1k-preprocess`: a LeRobot BEHAVIOR dataset (v2.1 or v3.0) -> a WebDataset shard set.

This module imports only click and light modules at load time: it is also the main module of the
episode workers' fork server, and `main` starts those workers (`preprocess.workers.EpisodePool`)
before it imports the pipeline (numpy, PyAV, pyarrow), so the workers' start-up overlaps the parent's.
"""

from __future__ import annotations

import os
import re
import shlex
import sys

import click

from preprocess.defaults import (
    DEFAULT_INTERLEAVE_WINDOW,
    DEFAULT_JPEG_QUALITY,
    DEFAULT_MAX_SIDE,
    DEFAULT_SHARD_MAX_BYTES,
    DEFAULT_SHARD_MAX_SAMPLES,
)
from preprocess.workers import EpisodePool, pool_size
from schemas.presets import DEFAULT_PRESET, PRESET_NAMES
from shards.command import Exits, command

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tb": 1 << 40,
    "tib": 1 << 40,
}


class ByteSize(click.ParamType):
    name = "BYTES"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
        if not m or m.group(2).lower() not in _UNITS:
            self.fail(f"{value!r}: expected a size like 1073741824, 512M or 1G (binary units)", param, ctx)
        size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
        if size <= 0:
            self.fail(f"{value!r}: must be > 0", param, ctx)
        return size


# "b1k-preprocess: error: ..." and status 1; a failed file operation says that --resume continues the
# run, and so does Ctrl-C (status 130).
EXITS = Exits(
    error=1,
    named=True,
    os_hint="(--resume continues this run)",
    interrupted="interrupted; rerun with --resume to continue",
)


@command("b1k-preprocess", EXITS)
@click.option(
    "--dataset-path",
    "dataset_path",
    required=True,
    type=click.Path(file_okay=False),
    help="Root of the LeRobot dataset (holds meta/info.json; v2.1 or v3.0, detected).",
)
@click.option(
    "--output-dir",
    "output_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Where the shard set goes (manifest.json, <split>-NNNNNN.tar, stats/). Must be empty or absent "
    "unless --overwrite/--resume.",
)
@click.option(
    "--state-preset",
    "state_preset",
    default=DEFAULT_PRESET,
    show_default=True,
    type=click.Choice(sorted(PRESET_NAMES)),
    help="Which R1Pro state dims to keep, by slice name, so a preset means the same quantities on the 2025 "
    "(256-dim) and 2026 (61-dim) layouts (detected from the dataset): top32 = arm/eef/gripper/trunk "
    "positions (ascending indices), aligned = the state of the 23 action dims in the action's order (base "
    "velocity, trunk, arms, one dim per gripper) then the eef positions and second gripper dims (31; what "
    "b1k-train --action-repr relative needs), standard = every dim the layout allows in the standard track.",
)
@click.option(
    "--state-indices",
    "state_indices",
    default=None,
    metavar="LIST",
    help="Custom state dims instead of the preset: indices into the dataset's state layout and half-open "
    "ranges, e.g. '158:165,179,186:189' (2025, 0..255) or '3:10,53:57' (2026, 0..60). Warns about dims "
    "not allowed in the standard track.",
)
@click.option(
    "--filter-state/--no-filter-state",
    "filter_state",
    default=True,
    help="Accepted for compatibility with the original script; the state is always filtered.",
)
@click.option(
    "--horizon",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="FRAMES",
    help="Stored action-chunk length H (frames at the source rate); the trainer may use any chunk <= H.",
)
@click.option(
    "--temporal-alpha",
    "temporal_alpha",
    default=0.0,
    show_default=True,
    type=float,
    help="alpha of weight = 1 + alpha * progress^2 (progress is always stored).",
)
@click.option(
    "--image-size",
    "image_size",
    default=None,
    metavar="SIZE",
    help=f"Stored image size: N (NxN), HxW, maxN (cap the longest side at N) or native. "
    f"[default: max{DEFAULT_MAX_SIDE}: head 720->512, wrists stay 480]",
)
@click.option(
    "--jpeg-quality",
    "jpeg_quality",
    default=DEFAULT_JPEG_QUALITY,
    show_default=True,
    type=click.IntRange(1, 100),
    help="JPEG quality (Pillow/libjpeg-turbo, 4:2:0).",
)
@click.option(
    "--frame-stride",
    "frame_stride",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="FRAMES",
    help="Keep one observation every N frames (action chunks keep the full rate).",
)
@click.option(
    "--episodes",
    default=None,
    metavar="LIST",
    help="Episode indices to process, the dataset's own (global in BEHAVIOR's releases), e.g. "
    "'60000,60010:60100' (half-open ranges). [default: every episode on disk]",
)
@click.option(
    "--tasks",
    default=None,
    metavar="LIST",
    help="Tasks to process, by name or evaluator id, e.g. 'hiding_Easter_eggs,51'. Episodes of other tasks, "
    "and tasks the meta files describe but the disk lacks (a partial download), are left out. [default: every "
    "task on disk]",
)
@click.option(
    "--prompt",
    type=click.Choice(["instruction", "name"]),
    default="instruction",
    show_default=True,
    help="What the samples are prompted with: the task's natural-language instruction (meta/tasks.jsonl; "
    "what the official baselines use; the task string where the dataset has none) or its snake_case name.",
)
@click.option(
    "--val-episodes",
    "val_episodes",
    default=None,
    metavar="LIST",
    help="Episodes held out in the 'val' split (same syntax as --episodes).",
)
@click.option(
    "--val-fraction",
    "val_fraction",
    default=0.0,
    show_default=True,
    type=float,
    help="Fraction of the selected episodes held out in 'val', chosen with --seed (exclusive with --val-episodes).",
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Seed of the val choice and the shard interleave."
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=1),
    metavar="N",
    help="Worker processes over episodes; as many threads then write the final shards. "
    "[default: number of CPU cores]",
)
@click.option(
    "--decoder-threads",
    "decoder_threads",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    metavar="N",
    help="Threads per video decoder (3 decoders per worker). 0 = auto: FFmpeg's choice (one per core) "
    "with 1 worker, cores // workers with more. 1 = one core per worker. Does not change the output.",
)
@click.option(
    "--shard-max-bytes",
    "shard_max_bytes",
    default=DEFAULT_SHARD_MAX_BYTES,
    type=ByteSize(),
    help="Start a new shard past this size (bytes; K/M/G suffixes). [default: 1G]",
)
@click.option(
    "--shard-max-samples",
    "shard_max_samples",
    default=DEFAULT_SHARD_MAX_SAMPLES,
    show_default=True,
    type=click.IntRange(min=1),
    help="Start a new shard past this many samples.",
)
@click.option(
    "--partition",
    default=None,
    metavar="K/N",
    help="Process only machine K's slice (K = 0..N-1) of the sorted episodes (K, K+N, ...); "
    "merge the partial sets with `b1k-shards merge` (stats merge exactly).",
)
@click.option(
    "--interleave-window",
    "interleave_window",
    default=DEFAULT_INTERLEAVE_WINDOW,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="EPISODES",
    help="Episodes mixed at a time when writing the shards.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace a shard set already in --output-dir. The new set is built beside it (room for both is "
    "needed) and replaces it only once complete: a run that fails leaves the previous set as it was.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run in --output-dir (same options): episodes already done are kept.",
)
@click.option(
    "--skip-bad-episodes",
    "skip_bad_episodes",
    is_flag=True,
    help="Skip episodes with bad data (NaN/inf, short or missing video) and list them in the manifest "
    "instead of failing.",
)
@click.option(
    "--ignore-free-space",
    "ignore_free_space",
    is_flag=True,
    help="Start even when the output filesystem has less free space than the projected set needs "
    "(twice its size at the peak: work files and shards; the projection is logged before every run).",
)
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar. [default: when stderr is a terminal]"
)
def main(**kwargs) -> None:
    """Decode a LeRobot BEHAVIOR dataset once into WebDataset shards + manifest.json.

    Each sample is one frame: the three RGB cameras (JPEG), the filtered state, the action chunk
    [i, i+H) (padded by repeating the last action, with action_is_pad), and a json with episode,
    frame, timestamp, progress, weight and task. Normalizer stats (train split) are exact.
    """
    kwargs.pop("filter_state")
    progress = kwargs.pop("progress")
    if progress is None:
        progress = sys.stderr.isatty()
    # Start the episode workers first: they import the episode code while this process imports the
    # pipeline and plans (`run` shuts them down). Not for more workers than cores: that many only pay
    # off with as many episodes to do, which planning tells (then `run` starts them).
    workers = pool_size(kwargs["workers"])
    pool = EpisodePool(workers) if 1 < workers <= (os.cpu_count() or 1) else None
    from preprocess.pipeline import PreprocessConfig, run

    run(PreprocessConfig(**kwargs, progress=progress, command_line=shlex.join(sys.argv)), pool)


if __name__ == "__main__":
    main()
