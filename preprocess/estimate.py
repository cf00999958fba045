"""Before a long run, say what it will cost: frames selected, a projected shard-set size, and whether
the output filesystem has room for it.

The size comes from real samples: the first episode's first frames are decoded, resized, encoded and
packed exactly as the run will (`SAMPLE_PROBE_FRAMES` of them), so JPEG size at the chosen resolution
and quality is measured, not guessed. A run needs room for the set twice over at its peak: the
episodes' work tars and the final shards they are copied into (the work tars go once the set is whole).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from preprocess.episode import EpisodeOptions, action_chunk
from preprocess.images import encode_rgb_jpeg
from preprocess.plan import Plan, PreprocessError
from preprocess.video import iter_episode_frames
from schemas.r1pro import ACTION_DIM
from schemas.sample import SampleMeta, sample_key
from shards.codec import encode_sample
from shards.writer import encode_tar_sample

log = logging.getLogger(__name__)

SAMPLE_PROBE_FRAMES = 4
PEAK_FACTOR = 2  # work tars + final shards, both on the output filesystem until the set is whole
GB = 1e9


@dataclass(frozen=True)
class CostEstimate:
    episodes: int
    frames: int
    samples: int
    bytes_per_sample: float

    @property
    def set_bytes(self) -> float:
        return self.samples * self.bytes_per_sample


def probe_sample_bytes(plan: Plan) -> float:
    """Mean tar bytes of a sample, from the first episode's first frames packed as the run packs them."""
    options: EpisodeOptions = plan.options
    ref = plan.source.episode(plan.episodes[0])
    count = min(SAMPLE_PROBE_FRAMES, ref.length)
    frames = {}
    for camera in options.cameras:
        video = ref.videos[camera.video_key]
        stream = iter_episode_frames(
            video.path, episode_index=ref.index, length=ref.length, fps=plan.source.fps,
            from_timestamp=video.from_timestamp, threads=1,
        )  # fmt: skip
        try:
            frames[camera] = [next(stream).to_ndarray(format="rgb24") for _ in range(count)]
        finally:
            stream.close()
    actions = np.zeros((ref.length, ACTION_DIM), np.float32)
    sizes = []
    for i in range(count):
        images = {
            c.name: encode_rgb_jpeg(frames[c][i], c.height, c.width, options.jpeg_quality)
            for c in options.cameras
        }
        chunk, is_pad = action_chunk(actions, i, options.horizon)
        meta = SampleMeta(  # the json's fields at typical widths (a prompt of ~80 characters)
            episode_index=ref.index, frame_index=i, episode_length=ref.length, timestamp=i / plan.source.fps,
            progress=0.123456789, weight=1.0123456789, task_index=0, task="x" * 80, skill="x" * 12,
        )  # fmt: skip
        state = np.zeros(len(options.state_indices), np.float32)
        sample = encode_sample(sample_key(ref.index, i), images, state, chunk, is_pad, meta.to_json())
        sizes.append(len(encode_tar_sample(sample).data))
    return float(np.mean(sizes))


def estimate_cost(plan: Plan, frame_stride: int) -> CostEstimate:
    lengths = [plan.source.episode(i).length for i in plan.episodes]
    samples = sum(-(-length // frame_stride) for length in lengths)
    return CostEstimate(len(lengths), sum(lengths), samples, probe_sample_bytes(plan))


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds `path` (or would: its nearest existing ancestor)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(".").free


def check_room(estimate: CostEstimate, out: Path, already_written: int, ignore: bool) -> None:
    """Log the projection; a PreprocessError when the output filesystem lacks room (unless `ignore`)."""
    need = max(0.0, PEAK_FACTOR * estimate.set_bytes - already_written)
    free = free_bytes(out)
    log.info(
        "projected shard set: %.3g GB (%d samples x %.1f kB, measured on the first episode's first frames); "
        "needs ~%.3g GB free at its peak (work files + shards), %s has %.3g GB free",
        estimate.set_bytes / GB, estimate.samples, estimate.bytes_per_sample / 1e3, need / GB, out, free / GB,
    )  # fmt: skip
    if need > free and not ignore:
        raise PreprocessError(
            f"--output-dir {out}: needs ~{need / GB:.2f} GB free (a {estimate.set_bytes / GB:.2f} GB set, "
            f"built beside its work files), the filesystem has {free / GB:.2f} GB; free some room, select fewer "
            "episodes (--tasks, --episodes, --partition), store smaller frames (--image-size), or pass "
            "--ignore-free-space to start anyway"
        )
