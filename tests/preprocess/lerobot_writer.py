"""A v3.0 dataset written by lerobot's own `LeRobotDataset` writer (create + add_frame + save_episode),
so the reader is tested on what lerobot itself writes, not only on our synthetic builder's habits.

Values are a simple known function of (episode, frame) that has nothing to do with the synthetic
builder's codes: state[d] = episode*1000 + frame + d/1000, action[d] = -(episode*1000 + frame) - d/100.
Frames are smooth colour waves whose phase depends on (camera, episode, frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from schemas.r1pro import ACTION_DIM, CAMERAS, STATE_DIM


def lr_state(episode: int, frame: int, dim: int = STATE_DIM) -> np.ndarray:
    return (episode * 1000 + frame + np.arange(dim) / 1000).astype(np.float32)


def lr_action(episode: int, frame: int) -> np.ndarray:
    return (-(episode * 1000 + frame) - np.arange(ACTION_DIM) / 100).astype(np.float32)


def lr_frame(camera: int, episode: int, frame: int, height: int, width: int) -> np.ndarray:
    """Smooth gradients and a moving wave (no hard edges), different for every (camera, episode, frame)."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    phase = 0.7 * frame + 2.1 * episode + 1.3 * camera
    r = 128 + 60 * np.sin(2 * np.pi * x + phase)
    g = 128 + 60 * np.cos(2 * np.pi * y - 0.5 * phase)
    b = 128 + 40 * np.sin(2 * np.pi * (x + y) + 0.3 * phase)
    return np.stack([r, g, b], axis=-1).round().astype(np.uint8)


def build_lerobot_dataset(
    root: Path,
    lengths=(12, 20, 7),
    head: int = 48,
    wrist: int = 32,
    task: str | tuple[str, ...] = "hide the eggs",
    state_dim: int = STATE_DIM,
) -> Path:
    """Write the dataset with lerobot's writer; returns its root. `task`: one for every episode, or one
    per episode (cycled); `state_dim`: 256 (2025 release) or 61 (2026 release, `names` null)."""
    tasks = (task,) if isinstance(task, str) else tuple(task)
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    sizes = {CAMERAS[0].video_key: head, CAMERAS[1].video_key: wrist, CAMERAS[2].video_key: wrist}
    features = {
        "observation.state": {"dtype": "float32", "shape": (state_dim,), "names": None},
        "action": {"dtype": "float32", "shape": (ACTION_DIM,), "names": None},
        **{
            key: {"dtype": "video", "shape": (s, s, 3), "names": ["height", "width", "channels"]}
            for key, s in sizes.items()
        },
    }
    dataset = LeRobotDataset.create(
        repo_id="test/b1k-lerobot-writer", fps=30, root=root, features=features, use_videos=True
    )
    for episode, length in enumerate(lengths):
        for frame in range(length):
            item = {
                "observation.state": lr_state(episode, frame, state_dim),
                "action": lr_action(episode, frame),
                "task": tasks[episode % len(tasks)],
            }
            for c, (key, s) in enumerate(sizes.items()):
                item[key] = lr_frame(c, episode, frame, s, s)
            dataset.add_frame(item)
        dataset.save_episode(parallel_encoding=False)
    dataset.finalize()
    return Path(root)
