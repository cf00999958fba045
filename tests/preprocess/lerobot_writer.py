"""A v3.0 dataset as lerobot's writer lays it out with its own defaults: every episode in one data file
and one mp4 per camera, free-text tasks, no depth video.

Built by `demo.synthetic`, whose v3.0 writer is lerobot's own `LeRobotDataset` writer (create +
add_frame + save_episode), so there is one way to write a dataset in the tests; the values are the
synthetic codes: `lr_state` / `lr_action` are the state and action of (episode, frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from demo.synthetic import RELEASES, SyntheticConfig, build_dataset, expected_action, expected_state
from schemas.r1pro import STATE_DIM

_RELEASE_OF_DIM = {layout.dim: release for release, layout in RELEASES.items()}


def lr_state(episode: int, frame: int, dim: int = STATE_DIM) -> np.ndarray:
    """float32 [dim] state of (episode, frame): 256 dims (2025 release) or 61 (2026)."""
    return expected_state(episode, frame, RELEASES[_RELEASE_OF_DIM[dim]])


def lr_action(episode: int, frame: int) -> np.ndarray:
    return expected_action(episode, frame)


def build_lerobot_dataset(
    root: Path,
    lengths=(12, 20, 7),
    head: int = 48,
    wrist: int = 32,
    task: str | tuple[str, ...] = "hide the eggs",
    state_dim: int = STATE_DIM,
) -> Path:
    """Write the dataset at `root`; returns it. `task`: one for every episode, or one per episode
    (cycled); `state_dim`: 256 (2025 release) or 61 (2026 release, `names` null)."""
    tasks = (task,) if isinstance(task, str) else tuple(task)
    distinct = list(dict.fromkeys(tasks))
    config = SyntheticConfig(
        layout="v3.0",
        release=_RELEASE_OF_DIM[state_dim],
        lengths=tuple(lengths),
        tasks=tuple(distinct.index(t) for t in tasks),
        task_names=tasks,
        head_size=head,
        wrist_size=wrist,
        depth=False,
    )
    return build_dataset(root, config).root
