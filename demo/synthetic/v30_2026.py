"""Writes the 2026 release's layouts (shared/BEHAVIOR.md, "The 2026 release, as published").

* ``published``: ONE LeRobot v3.0 dataset for the whole release, of which only the built tasks'
  chunks exist, as after downloading a few tasks: task T's files are ``data/chunk-{T:03d}/file-*``,
  ``videos/<key>/chunk-{T:03d}/file-*.mp4`` and ``meta/episodes/chunk-{T:03d}/file-*.parquet``;
  ``episode_index = 200 * T + demo``, ``task_index = T``, ``index`` numbers frames across the whole
  release; ``meta/info.json`` (20,000 episodes, 100 tasks), ``meta/tasks.parquet`` and
  ``meta/tasks.jsonl`` (100 tasks, with instructions) and ``meta/stats.json`` describe the release.
* ``per-task``: the older per-task copy (``b1k/<task_name>/``): one v3.0 dataset of one task,
  episodes and frames numbered from 0 in ``chunk-000``, its only task numbered 0.

Both: the 2026 RGB keys as HEVC (libx265, yuv420p, GOP 8, no B-frames, CRF 30), a depth video
``observation.depth_linear.<camera>`` (12-bit HEVC, to be skipped), ``observation.state``
float32[61], ``action`` float32[23], ``observation.robot2cam_pose.<camera>`` float32[7],
``next.reward/terminated/truncated``, and meta/episodes' ``raw_episode_id``, ``task_instance_id``,
``annotation_path``. lerobot 0.6 writes neither layout (its chunks fill by file count), so the files
are written here with pyarrow and PyAV; each episode is encoded on its own and the episodes of a
video file are joined with lerobot's stream-copy concatenation, as lerobot's writer does.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from demo.synthetic.codes import expected_cam_rel_poses
from demo.synthetic.meta_2026 import EpisodeColumns, write_meta_2026
from demo.synthetic.plan import SyntheticConfig, SyntheticEpisode
from demo.synthetic.video import (
    camera_suffix,
    depth_encoder,
    encode_video,
    frame_functions,
    rgb_encoder,
    video_keys,
)
from schemas.r1pro import ACTION_KEY, STATE_KEY

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
POSE_DIM = 7  # position 3 + quaternion 4, per camera


def write_v30_2026(root: Path, config: SyntheticConfig, episodes: list[SyntheticEpisode]) -> None:
    """Write `episodes` under `root` (existing, empty) and record their files on them."""
    data_files, video_files = _assign_files(config, episodes)
    columns = {ep.ordinal: episode_columns(ep, config) for ep in episodes}
    for path, members in data_files.items():
        _write_data_file(root / path, [columns[ep.ordinal] for ep in members])
    samples = _write_videos(root, config, video_files)
    write_meta_2026(root, config, episodes, samples, columns)


def chunk_of(config: SyntheticConfig, ep: SyntheticEpisode) -> int:
    """The published layout's chunk is the task; a per-task copy has one chunk."""
    return ep.task_id if config.layout == "published" else 0


def _file_index(position: int, episodes_per_file: int) -> int:
    return position // episodes_per_file if episodes_per_file > 0 else 0


def _assign_files(
    config: SyntheticConfig, episodes: list[SyntheticEpisode]
) -> tuple[dict[str, list[SyntheticEpisode]], dict[tuple[str, str], list[SyntheticEpisode]]]:
    """Each episode's data file and video files (several episodes per file, per chunk); returns the
    members of each data file and of each (video key, video file), in order."""
    data_files: dict[str, list[SyntheticEpisode]] = {}
    video_files: dict[tuple[str, str], list[SyntheticEpisode]] = {}
    positions: dict[int, int] = {}  # chunk -> episodes placed in it so far
    for ep in episodes:
        chunk = chunk_of(config, ep)
        position = positions.get(chunk, 0)
        positions[chunk] = position + 1
        file_index = _file_index(position, config.episodes_per_data_file)
        ep.data_file = DATA_PATH.format(chunk_index=chunk, file_index=file_index)
        data_files.setdefault(ep.data_file, []).append(ep)
        file_index = _file_index(position, config.episodes_per_video_file)
        for key in video_keys(config):
            path = VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file_index)
            members = video_files.setdefault((key, path), [])
            ep.video_files[key] = path
            ep.from_timestamps[key] = sum(m.length for m in members) / config.fps
            members.append(ep)
    return data_files, video_files


def robot2cam_pose_key(rgb_key: str) -> str:
    return f"observation.robot2cam_pose.{camera_suffix(rgb_key)}"


def episode_columns(ep: SyntheticEpisode, config: SyntheticConfig) -> EpisodeColumns:
    """The data columns of one episode, in the release's order and dtypes."""
    frames = np.arange(ep.length, dtype=np.int64)
    poses = expected_cam_rel_poses(ep.code_index, frames)  # 3 cameras x (position 3 + quaternion 4)
    last = frames == ep.length - 1
    columns: EpisodeColumns = {STATE_KEY: ep.states(), ACTION_KEY: ep.actions()}
    for camera, key in enumerate(config.rgb_keys):
        columns[robot2cam_pose_key(key)] = poses[:, POSE_DIM * camera : POSE_DIM * (camera + 1)]
    columns.update(
        {
            "next.reward": last.astype(np.float32),  # success on the last frame
            "next.terminated": last,
            "next.truncated": np.zeros(ep.length, dtype=bool),
            "timestamp": (frames / config.fps).astype(np.float32),
            "frame_index": frames,
            "episode_index": np.full(ep.length, ep.episode_index, dtype=np.int64),
            "index": ep.dataset_from_index + frames,
            "task_index": np.full(ep.length, ep.task_index, dtype=np.int64),
        }
    )
    return columns


def _arrow_column(values: np.ndarray) -> pa.Array:
    if values.ndim == 2:  # a vector per frame: fixed-size lists, as lerobot writes them
        return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
    return pa.array(values)


def _write_data_file(path: Path, episodes: list[EpisodeColumns]) -> None:
    """One parquet file, one row group per episode (as lerobot writes them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tables = [pa.table({k: _arrow_column(v) for k, v in cols.items()}) for cols in episodes]
    with pq.ParquetWriter(path, tables[0].schema) as writer:
        for table in tables:
            writer.write_table(table, row_group_size=table.num_rows)


def _write_videos(
    root: Path, config: SyntheticConfig, video_files: dict[tuple[str, str], list[SyntheticEpisode]]
) -> dict[tuple[int, str], np.ndarray]:
    """Encode every episode of every video file on a few threads (PyAV releases the GIL while
    encoding), then join each file's episodes by stream copy in this thread; return the frames sampled
    for each (episode ordinal, key)'s image stats.

    Every episode is its own encode (so each starts on a keyframe, as in the release); the joins run
    once all are encoded."""
    from lerobot.datasets.video_utils import concatenate_video_files

    frames = frame_functions(config)
    rgb = rgb_encoder(config)
    samples: dict[tuple[int, str], np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="b1k-synthetic-") as tmp:
        jobs = [
            (key, ep, root / path if len(members) == 1 else Path(tmp) / f"{key}-{ep.ordinal:06d}.mp4")
            for (key, path), members in video_files.items()
            for ep in members
        ]

        def encode(job: tuple[str, SyntheticEpisode, Path]) -> np.ndarray:
            key, ep, out = job
            encoder = rgb if key in config.rgb_keys else depth_encoder()
            return encode_video(out, lambda i: frames[key](ep.code_index, i), ep.length, config.fps, encoder)

        with ThreadPoolExecutor(max_workers=config.workers or min(4, os.cpu_count() or 1)) as pool:
            for (key, ep, _), sampled in zip(jobs, pool.map(encode, jobs), strict=True):
                samples[(ep.ordinal, key)] = sampled
        for (key, path), members in video_files.items():
            if len(members) > 1:  # each member starts on a keyframe: join them by stream copy
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                parts = [Path(tmp) / f"{key}-{ep.ordinal:06d}.mp4" for ep in members]
                concatenate_video_files(parts, root / path)
    return samples
