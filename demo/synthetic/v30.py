"""Writes a synthetic dataset in LeRobot v3.0 with lerobot's own `LeRobotDataset` writer.

lerobot writes everything: data parquet files (one row group per episode), videos (encoded per
episode as the frames come, with its streaming encoder, and concatenated into files),
``meta/episodes``, ``meta/tasks.parquet``, per-episode and aggregated stats, ``info.json``. What this
module adds on top:

* file boundaries at fixed episodes (``episodes_per_data_file`` / ``episodes_per_video_file``), so
  readers are tested on them: lerobot only starts a new file when one passes a size in MB, which
  these small datasets never reach (see :func:`_set_file_limits`);
* the depth video ``observation.images.depth.head`` is a feature flagged ``is_depth_map``, which
  lerobot encodes with its depth encoder (12-bit HEVC);
* the files lerobot chose are read back from ``meta/episodes`` onto the :class:`SyntheticEpisode`s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from demo.synthetic.codes import CAM_REL_POSES_DIM, expected_cam_rel_poses
from demo.synthetic.plan import (
    CAM_REL_POSES_KEY,
    DEPTH_KEY,
    HEAD_KEY,
    RGB_KEYS,
    SyntheticConfig,
    SyntheticEpisode,
)
from demo.synthetic.video import depth_encoder, frame_functions, rgb_encoder
from schemas.r1pro import ACTION_DIM, ACTION_KEY, STATE_KEY

# lerobot starts a new data / video file when the current one would pass `data_files_size_in_mb` /
# `video_files_size_in_mb` (100 / 200 MB by default). Set before each episode: a limit every file
# passes where the episode must start a new file, one no file reaches where it must not.
_NEW_FILE_MB, _SAME_FILE_MB = 1e-9, 1e9


def write_v30(root: Path, config: SyntheticConfig, episodes: list[SyntheticEpisode]) -> None:
    """Write `episodes` at `root` (must not exist: lerobot creates it) and record their files on them."""
    from lerobot.datasets.io_utils import write_info
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.datasets.utils import DEFAULT_DATA_FILE_SIZE_IN_MB, DEFAULT_VIDEO_FILE_SIZE_IN_MB

    dataset = LeRobotDataset.create(
        repo_id="local/synthetic-behavior",
        fps=config.fps,
        features=_features(config),
        root=root,
        robot_type="R1Pro",
        use_videos=True,
        rgb_encoder=rgb_encoder(config),
        depth_encoder=depth_encoder(),
        # SVT-AV1 3.0 left to pick its thread count dies of a floating-point exception on videos as
        # small as the tests' (24 and 32 px); one thread per encode, as the v2.1 writer does
        encoder_threads=1,
        # lerobot also starts a new meta/episodes file past `data_files_size_in_mb`, but only once a
        # first one is on disk: holding every episode's row until finalize() keeps them in one file
        metadata_buffer_size=len(episodes),
        # frames go straight to one encoder thread per video key (lerobot computes the video stats
        # there too) instead of through a PNG file per frame and camera written and read back:
        # 25 vs 35-45 s for the test suite's v3.0 datasets on 2 cores (the hand-written writer this
        # replaced: 16 s). A queue as long as the longest episode, as feed_frame drops a frame it
        # cannot queue within 0.1 s; it holds up to that many frames per camera while the encoders
        # catch up (64 px: 12 KB a frame; 720 px: 1.5 MB).
        streaming_encoding=True,
        encoder_queue_maxsize=max(ep.length for ep in episodes),
    )
    dataset.meta.update_chunk_settings(chunks_size=config.chunks_size)
    frames = frame_functions(config)
    with _no_progress_bars():
        for ep in episodes:
            _set_file_limits(dataset.meta, config, ep.ordinal)
            states, actions = ep.states(), ep.actions()
            poses = expected_cam_rel_poses(ep.episode_index, np.arange(ep.length))
            for i in range(ep.length):
                frame = {STATE_KEY: states[i], ACTION_KEY: actions[i], CAM_REL_POSES_KEY: poses[i]}
                frame.update({key: show(ep.episode_index, i) for key, show in frames.items()})
                dataset.add_frame({**frame, "task": ep.task})
            dataset.save_episode()
        dataset.finalize()
    # the limits of the last episode are no setting of the dataset: record lerobot's defaults
    dataset.meta.update_chunk_settings(
        data_files_size_in_mb=DEFAULT_DATA_FILE_SIZE_IN_MB,
        video_files_size_in_mb=DEFAULT_VIDEO_FILE_SIZE_IN_MB,
    )
    write_info(dataset.meta.info, root)
    _record_files(root, dataset.meta, episodes)


def _features(config: SyntheticConfig) -> dict[str, dict]:
    sizes = config.camera_sizes()
    features: dict[str, dict] = {
        STATE_KEY: {"dtype": "float32", "shape": (config.state_layout.dim,), "names": None},
        ACTION_KEY: {"dtype": "float32", "shape": (ACTION_DIM,), "names": None},
        CAM_REL_POSES_KEY: {"dtype": "float32", "shape": (CAM_REL_POSES_DIM,), "names": None},
    }
    names = ["height", "width", "channels"]
    for key in RGB_KEYS:
        features[key] = {"dtype": "video", "shape": (*sizes[key], 3), "names": names}
    if config.depth:
        features[DEPTH_KEY] = {
            "dtype": "video",
            "shape": (*sizes[HEAD_KEY], 1),
            "names": names,
            "info": {"is_depth_map": True},
        }
    return features


def _set_file_limits(meta, config: SyntheticConfig, ordinal: int) -> None:
    """Make lerobot start a new data / video file at episode `ordinal` exactly where the config's
    episodes per file say (0: all in one file)."""

    def limit(episodes_per_file: int) -> float:
        starts = episodes_per_file > 0 and ordinal > 0 and ordinal % episodes_per_file == 0
        return _NEW_FILE_MB if starts else _SAME_FILE_MB

    meta.update_chunk_settings(
        data_files_size_in_mb=limit(config.episodes_per_data_file),
        video_files_size_in_mb=limit(config.episodes_per_video_file),
    )


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """`datasets` draws a progress bar for every episode lerobot saves: off while writing."""
    from datasets.utils import logging as datasets_logging

    enabled = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            datasets_logging.enable_progress_bar()


def _record_files(root: Path, meta, episodes: list[SyntheticEpisode]) -> None:
    """Copy each episode's data file, video files and video start times from lerobot's meta/episodes
    onto `episodes`, checking that lerobot numbered them as planned and encoded every frame."""
    rows = [
        row
        for path in sorted((root / "meta" / "episodes").rglob("*.parquet"))
        for row in pq.read_table(path).to_pylist()
    ]
    tasks = meta.tasks["task_index"].to_dict()
    for ep, row in zip(episodes, rows, strict=True):
        planned = (ep.episode_index, ep.length, ep.dataset_from_index, ep.task_index)
        written = (row["episode_index"], row["length"], row["dataset_from_index"], tasks[row["tasks"][0]])
        if written != planned:
            raise RuntimeError(f"lerobot wrote episode {written}, planned {planned}")
        ep.data_file = meta.data_path.format(
            chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
        )
        for key in meta.video_keys:
            ep.video_files[key] = meta.video_path.format(
                video_key=key,
                chunk_index=row[f"videos/{key}/chunk_index"],
                file_index=row[f"videos/{key}/file_index"],
            )
            ep.from_timestamps[key] = row[f"videos/{key}/from_timestamp"]
            frames = (row[f"videos/{key}/to_timestamp"] - ep.from_timestamps[key]) * meta.fps
            if abs(frames - ep.length) > 0.5:
                raise RuntimeError(
                    f"lerobot encoded {frames:.1f} frames of {key} for episode {ep.episode_index}, not {ep.length}"
                )
