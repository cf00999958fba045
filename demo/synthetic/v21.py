"""Writes a synthetic dataset in BEHAVIOR's 2025 release layout, LeRobot v2.1 (lerobot 0.6 cannot write it).

One parquet and one mp4 per camera per episode in "chunk" folders named per task
(``data/task-0006/episode_00060010.parquet``), ``meta/episodes.jsonl``, ``meta/tasks.jsonl``
(``task_index`` is the BEHAVIOR task id), ``meta/episodes_stats.jsonl`` (lerobot v2.1's
min/max/mean/std/count), a float64 ``timestamp`` and a variable-length ``observation.task_info``, as in
the release.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from demo.synthetic.codes import CAM_REL_POSES_DIM, expected_cam_rel_poses
from demo.synthetic.plan import (
    CAM_REL_POSES_KEY,
    DEPTH_KEY,
    HEAD_KEY,
    RGB_KEYS,
    TASK_INFO_KEY,
    V21_CHUNKS_SIZE,
    SyntheticConfig,
    SyntheticEpisode,
)
from demo.synthetic.video import depth_encoder, encode_video, frame_functions, rgb_encoder, video_keys
from schemas.r1pro import ACTION_DIM, ACTION_KEY, FPS, STATE_KEY

V21_DATA_PATH = "data/task-{episode_chunk:04d}/episode_{episode_index:08d}.parquet"
V21_VIDEO_PATH = "videos/task-{episode_chunk:04d}/{video_key}/episode_{episode_index:08d}.mp4"
_STATS = ("min", "max", "mean", "std", "count")  # what lerobot v2.1 stored per feature


def write_v21(root: Path, config: SyntheticConfig, episodes: list[SyntheticEpisode]) -> None:
    """Write `episodes` under `root` (existing, empty) and record their files on them."""
    for ep in episodes:
        _write_episode_data(root, config, ep)
    samples = _write_videos(root, config, episodes)
    _write_meta(root, config, episodes, samples)


def _chunk(ep: SyntheticEpisode) -> int:
    return ep.episode_index // V21_CHUNKS_SIZE  # = the BEHAVIOR task id


def _episode_columns(ep: SyntheticEpisode, fps: int) -> dict[str, np.ndarray]:
    frames = np.arange(ep.length, dtype=np.int64)
    return {
        STATE_KEY: ep.states(),
        ACTION_KEY: ep.actions(),
        CAM_REL_POSES_KEY: expected_cam_rel_poses(ep.episode_index, frames),
        "timestamp": frames / fps,  # float64, as in the release
        "frame_index": frames,
        "episode_index": np.full(ep.length, ep.episode_index, dtype=np.int64),
        "index": ep.dataset_from_index + frames,
        "task_index": np.full(ep.length, ep.task_index, dtype=np.int64),
    }


def _task_info_values(ep: SyntheticEpisode) -> list[list[float]]:
    width = 3 + ep.task_id % 4  # variable length, as the release's shape [null]
    return [[float(ep.episode_index % 97) + i / 4.0 + j for j in range(width)] for i in range(ep.length)]


def _write_episode_data(root: Path, config: SyntheticConfig, ep: SyntheticEpisode) -> None:
    ep.data_file = V21_DATA_PATH.format(episode_chunk=_chunk(ep), episode_index=ep.episode_index)
    cols = _episode_columns(ep, config.fps)
    f32 = pa.float32()
    table = pa.table(
        {
            STATE_KEY: pa.array(list(cols[STATE_KEY]), type=pa.list_(f32)),
            CAM_REL_POSES_KEY: pa.array(list(cols[CAM_REL_POSES_KEY]), type=pa.list_(f32)),
            TASK_INFO_KEY: pa.array(_task_info_values(ep), type=pa.list_(f32)),
            ACTION_KEY: pa.array(list(cols[ACTION_KEY]), type=pa.list_(f32)),
            "timestamp": pa.array(cols["timestamp"], type=pa.float64()),
            "frame_index": pa.array(cols["frame_index"]),
            "episode_index": pa.array(cols["episode_index"]),
            "index": pa.array(cols["index"]),
            "task_index": pa.array(cols["task_index"]),
        }
    )
    path = root / ep.data_file
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _write_videos(
    root: Path, config: SyntheticConfig, episodes: list[SyntheticEpisode]
) -> dict[tuple[int, str], np.ndarray]:
    """Encode every (episode, video key) to its file on `workers` threads (PyAV releases the GIL
    while encoding); return the frames sampled for each one's image stats."""
    frames = frame_functions(config)
    encoders = {key: depth_encoder() if key == DEPTH_KEY else rgb_encoder(config) for key in frames}
    jobs = [(ep, key) for ep in episodes for key in video_keys(config)]
    for ep, key in jobs:
        ep.video_files[key] = V21_VIDEO_PATH.format(
            episode_chunk=_chunk(ep), video_key=key, episode_index=ep.episode_index
        )
        ep.from_timestamps[key] = 0.0

    def encode(job: tuple[SyntheticEpisode, str]) -> tuple[tuple[int, str], np.ndarray]:
        ep, key = job
        sample = encode_video(
            root / ep.video_files[key],
            lambda i: frames[key](ep.episode_index, i),
            ep.length,
            config.fps,
            encoders[key],
        )
        return (ep.ordinal, key), sample

    workers = config.workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(pool.map(encode, jobs))


def _stats(values: np.ndarray, axis, keepdims: bool) -> dict[str, list]:
    values = np.asarray(values, dtype=np.float64)
    return {
        "min": values.min(axis=axis, keepdims=keepdims).tolist(),
        "max": values.max(axis=axis, keepdims=keepdims).tolist(),
        "mean": values.mean(axis=axis, keepdims=keepdims).tolist(),
        "std": values.std(axis=axis, keepdims=keepdims).tolist(),
        "count": [values.shape[0]],
    }


def _image_stats(samples: np.ndarray, is_depth: bool) -> dict[str, list]:
    """Per-channel stats (C, 1, 1) of sampled (N, C, h, w) frames, RGB scaled to [0, 1] as lerobot."""
    stats = _stats(samples / (1.0 if is_depth else 255.0), (0, 2, 3), True)
    return {k: v if k == "count" else v[0] for k, v in stats.items()}


def _video_feature(height: int, width: int, codec: str, pix_fmt: str, is_depth: bool) -> dict:
    return {
        "dtype": "video",
        "shape": [height, width, 3],
        "names": ["height", "width", "depth" if is_depth else "rgb"],
        "info": {
            "video.fps": float(FPS),
            "video.height": height,
            "video.width": width,
            "video.channels": 3,
            "video.codec": codec,
            "video.pix_fmt": pix_fmt,
            "video.is_depth_map": is_depth,
            "has_audio": False,
        },
    }


def _features(config: SyntheticConfig) -> dict[str, dict]:
    sizes = config.camera_sizes()
    features = {
        key: _video_feature(*sizes[key], codec="av1", pix_fmt="yuv420p", is_depth=False) for key in RGB_KEYS
    }
    if config.depth:
        pix_fmt = depth_encoder().pix_fmt
        features[DEPTH_KEY] = _video_feature(*sizes[HEAD_KEY], codec="hevc", pix_fmt=pix_fmt, is_depth=True)
    scalar = {"shape": [1], "names": None}
    features.update(
        {
            ACTION_KEY: {"dtype": "float32", "shape": [ACTION_DIM], "names": None},
            "timestamp": {"dtype": "float64", **scalar},
            "frame_index": {"dtype": "int64", **scalar},
            "episode_index": {"dtype": "int64", **scalar},
            "index": {"dtype": "int64", **scalar},
            "task_index": {"dtype": "int64", **scalar},
            CAM_REL_POSES_KEY: {"dtype": "float32", "shape": [CAM_REL_POSES_DIM], "names": None},
            STATE_KEY: {"dtype": "float32", "shape": [config.state_layout.dim], "names": None},
            TASK_INFO_KEY: {"dtype": "float32", "shape": [None], "names": None},
        }
    )
    return features


def _write_meta(
    root: Path,
    config: SyntheticConfig,
    episodes: list[SyntheticEpisode],
    samples: dict[tuple[int, str], np.ndarray],
) -> None:
    features = _features(config)
    info = {
        "codebase_version": "v2.1",
        "robot_type": "R1Pro",
        "total_episodes": len(episodes),
        "total_frames": sum(e.length for e in episodes),
        "total_tasks": len({e.task_index for e in episodes}),
        "total_videos": len(episodes) * len(video_keys(config)),
        "chunks_size": V21_CHUNKS_SIZE,
        "fps": config.fps,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": V21_DATA_PATH,
        "video_path": V21_VIDEO_PATH,
        "features": features,
    }
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4, ensure_ascii=False) + "\n")
    _write_jsonl(
        root / "meta" / "episodes.jsonl",
        [{"episode_index": e.episode_index, "tasks": [e.task], "length": e.length} for e in episodes],
    )
    tasks = sorted({(e.task_index, e.task) for e in episodes})
    _write_jsonl(root / "meta" / "tasks.jsonl", [{"task_index": i, "task": t} for i, t in tasks])
    rows = []
    for ep in episodes:
        columns = _episode_columns(ep, config.fps)
        stats = {key: _stats(values, 0, values.ndim == 1) for key, values in columns.items()}
        for key in video_keys(config):
            stats[key] = _image_stats(samples[(ep.ordinal, key)], key == DEPTH_KEY)
        rows.append(
            {"episode_index": ep.episode_index, "stats": {k: stats[k] for k in features if k in stats}}
        )
    _write_jsonl(root / "meta" / "episodes_stats.jsonl", rows)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
