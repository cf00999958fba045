"""The ``meta/`` folder of the synthetic 2026 layouts: info.json, tasks.parquet, tasks.jsonl, stats.json
and meta/episodes, as the release has them (shared/BEHAVIOR.md, "The 2026 release, as published").

In the ``published`` layout the first three describe the WHOLE release (20,000 episodes, 100 tasks)
while only the built tasks' chunks exist, as after a partial download; stats.json holds the built
episodes' stats. A ``per-task`` copy describes itself: its episodes, its one task numbered 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from demo.synthetic.plan import SyntheticConfig, SyntheticEpisode, task_name
from demo.synthetic.release import RELEASE_EPISODES, UNBUILT_EPISODE_FRAMES, instruction
from demo.synthetic.video import depth_encoder, rgb_encoder, video_keys
from schemas.r1pro import ACTION_DIM, ACTION_KEY
from schemas.tasks import CHALLENGE_TASKS

EpisodeColumns = dict[str, np.ndarray]  # column name -> values per frame ([N] or [N, dim])
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.int64): "int64", np.dtype(bool): "bool"}


def write_meta_2026(
    root: Path,
    config: SyntheticConfig,
    episodes: list[SyntheticEpisode],
    samples: dict[tuple[int, str], np.ndarray],
    columns: dict[int, EpisodeColumns],
) -> None:
    """Everything under ``meta/``; `samples` are each (episode ordinal, video key)'s sampled frames,
    `columns` each episode ordinal's data columns."""
    from lerobot.datasets.compute_stats import aggregate_stats
    from lerobot.datasets.io_utils import write_stats

    features = _features(root, config, episodes, columns[episodes[0].ordinal])
    stats = {ep.ordinal: _episode_stats(columns[ep.ordinal], samples, ep.ordinal, config) for ep in episodes}
    (root / "meta").mkdir(parents=True, exist_ok=True)
    _write_info(root, config, episodes, features)
    _write_tasks(root, config, episodes)
    write_stats(aggregate_stats(list(stats.values())), root)
    _write_episodes(root, config, episodes, stats)


def _numeric_feature(values: np.ndarray) -> dict:
    shape = [values.shape[1]] if values.ndim == 2 else [1]
    return {"dtype": _DTYPES[values.dtype], "shape": shape, "names": None}


def _features(
    root: Path, config: SyntheticConfig, episodes: list[SyntheticEpisode], columns: EpisodeColumns
) -> dict[str, dict]:
    """lerobot's feature dicts: the numeric columns, then the videos with what lerobot records of
    their stream and encoder (``get_video_info``), as its writer puts them in info.json."""
    from lerobot.datasets.video_utils import get_video_info

    features = {key: _numeric_feature(values) for key, values in columns.items()}
    assert features[ACTION_KEY]["shape"] == [ACTION_DIM]
    sizes = config.camera_sizes()
    head = config.rgb_keys[0]
    videos = {}
    for key in video_keys(config):
        is_depth = key not in config.rgb_keys
        path = root / episodes[0].video_files[key]
        encoder = depth_encoder() if is_depth else rgb_encoder(config)
        info = get_video_info(path, encoder)
        videos[key] = {
            "dtype": "video",
            "shape": [*sizes[head if is_depth else key], 1 if is_depth else 3],
            "names": ["height", "width", "channels"],
            "info": {"is_depth_map": True, "depth_unit": "m", **info} if is_depth else info,
        }
    # lerobot's order: the recorded features, then its default ones (timestamp, indices)
    recorded = [
        k for k in features if k not in ("timestamp", "frame_index", "episode_index", "index", "task_index")
    ]
    ordered = {k: features[k] for k in recorded} | videos
    return ordered | {k: features[k] for k in features if k not in ordered}


def _write_info(
    root: Path, config: SyntheticConfig, episodes: list[SyntheticEpisode], features: dict[str, dict]
) -> None:
    from lerobot.datasets.utils import DEFAULT_DATA_FILE_SIZE_IN_MB, DEFAULT_VIDEO_FILE_SIZE_IN_MB

    built = sum(ep.length for ep in episodes)
    if config.layout == "published":  # the whole release, built episodes or not
        total_episodes, total_tasks = RELEASE_EPISODES, len(CHALLENGE_TASKS)
        total_frames = built + (RELEASE_EPISODES - len(episodes)) * UNBUILT_EPISODE_FRAMES
    else:
        total_episodes, total_tasks, total_frames = len(episodes), 1, built
    info = {
        "codebase_version": "v3.0",
        "robot_type": "R1Pro",
        "total_episodes": total_episodes,
        "total_frames": total_frames,
        "total_tasks": total_tasks,
        "chunks_size": config.chunks_size,
        "data_files_size_in_mb": DEFAULT_DATA_FILE_SIZE_IN_MB,
        "video_files_size_in_mb": DEFAULT_VIDEO_FILE_SIZE_IN_MB,
        "fps": config.fps,
        "splits": {"train": f"0:{total_episodes}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": features,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4) + "\n")


def _task_rows(config: SyntheticConfig, episodes: list[SyntheticEpisode]) -> list[tuple[int, int]]:
    """(task_index as written, evaluator task id) of every task the meta lists."""
    if config.layout == "published":
        return [(t, t) for t in range(len(CHALLENGE_TASKS))]
    return [(0, episodes[0].task_id)]


def _write_tasks(root: Path, config: SyntheticConfig, episodes: list[SyntheticEpisode]) -> None:
    """tasks.parquet (snake_case name as index, ``task_index``, as lerobot writes it) and tasks.jsonl
    (``task_index``, ``task_name``, ``task``: the instruction)."""
    rows = _task_rows(config, episodes)
    names = pd.Index([task_name(t) for _, t in rows], name="task")
    pd.DataFrame({"task_index": [i for i, _ in rows]}, index=names).to_parquet(
        root / "meta" / "tasks.parquet"
    )
    lines = [
        json.dumps({"task_index": i, "task_name": task_name(t), "task": instruction(t)}) + "\n"
        for i, t in rows
    ]
    (root / "meta" / "tasks.jsonl").write_text("".join(lines))


def _episode_stats(
    columns: EpisodeColumns, samples: dict[tuple[int, str], np.ndarray], ordinal: int, config: SyntheticConfig
) -> dict[str, dict[str, np.ndarray]]:
    """lerobot's per-episode stats: per dim for the columns, per channel for the videos (RGB in [0, 1])."""
    from lerobot.datasets.compute_stats import get_feature_stats

    stats = {
        key: get_feature_stats(values.astype(np.float64), axis=0, keepdims=values.ndim == 1)
        for key, values in columns.items()
    }
    for key in video_keys(config):
        scale = 255.0 if key in config.rgb_keys else 1.0
        image = get_feature_stats(samples[(ordinal, key)].astype(np.float64), axis=(0, 2, 3), keepdims=True)
        stats[key] = {k: v if k == "count" else np.squeeze(v / scale, axis=0) for k, v in image.items()}
    return stats


def _episode_row(ep: SyntheticEpisode, config: SyntheticConfig, stats: dict) -> dict:
    chunk = int(ep.data_file.split("/")[1].removeprefix("chunk-"))
    data_file = int(Path(ep.data_file).stem.removeprefix("file-"))
    row = {
        "episode_index": ep.episode_index,
        "tasks": [ep.task],
        "length": ep.length,
        "data/chunk_index": chunk,
        "data/file_index": data_file,
        "dataset_from_index": ep.dataset_from_index,
        "dataset_to_index": ep.dataset_from_index + ep.length,
    }
    for key in video_keys(config):
        path = Path(ep.video_files[key])
        row[f"videos/{key}/chunk_index"] = int(path.parent.name.removeprefix("chunk-"))
        row[f"videos/{key}/file_index"] = int(path.stem.removeprefix("file-"))
        row[f"videos/{key}/from_timestamp"] = ep.from_timestamps[key]
        row[f"videos/{key}/to_timestamp"] = ep.from_timestamps[key] + ep.length / config.fps
    for key, feature_stats in stats.items():
        for name, value in feature_stats.items():
            row[f"stats/{key}/{name}"] = np.asarray(value).tolist()
    row["meta/episodes/chunk_index"] = chunk
    row["meta/episodes/file_index"] = 0
    row["raw_episode_id"] = ep.raw_episode_id
    row["task_instance_id"] = ep.task_instance_id
    row["annotation_path"] = ep.annotation_file
    return row


def _write_episodes(
    root: Path, config: SyntheticConfig, episodes: list[SyntheticEpisode], stats: dict[int, dict]
) -> None:
    """One meta/episodes parquet per chunk (the published layout's chunk is the task)."""
    chunks: dict[int, list[dict]] = {}
    for ep in episodes:
        row = _episode_row(ep, config, stats[ep.ordinal])
        chunks.setdefault(row["meta/episodes/chunk_index"], []).append(row)
    for chunk, rows in chunks.items():
        path = root / EPISODES_PATH.format(chunk_index=chunk, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), path)
