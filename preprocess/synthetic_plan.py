"""What a synthetic dataset holds: feature keys, the build config, the episode plan, the result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from preprocess.synthetic_codes import expected_actions, expected_states
from schemas.r1pro import CAMERAS, FPS, LAYOUT_2025, LAYOUT_2026, StateLayout

LAYOUTS = ("v3.0", "v2.1")
# BEHAVIOR Challenge release -> the state layout it records (and the on-disk layouts it ships in)
RELEASES: dict[str, StateLayout] = {"2025": LAYOUT_2025, "2026": LAYOUT_2026}
RELEASE_LAYOUTS: dict[str, tuple[str, ...]] = {"2025": LAYOUTS, "2026": ("v3.0",)}
RGB_KEYS: tuple[str, ...] = tuple(c.video_key for c in CAMERAS)  # head, left_wrist, right_wrist
HEAD_KEY, LEFT_WRIST_KEY, RIGHT_WRIST_KEY = RGB_KEYS
DEPTH_KEY = "observation.images.depth.head"
CAM_REL_POSES_KEY = "observation.cam_rel_poses"
TASK_INFO_KEY = "observation.task_info"
CAMERA_CODES: dict[str, int] = {HEAD_KEY: 0, LEFT_WRIST_KEY: 1, RIGHT_WRIST_KEY: 2}

# BEHAVIOR challenge task ids -> names (task 6 is the one BEHAVIOR.md pins down; the others are
# illustrative entries of the challenge list). Unknown ids get a generic name.
TASK_NAMES: dict[int, str] = {
    0: "turning_on_radio",
    1: "picking_up_trash",
    2: "putting_away_Halloween_decorations",
    3: "cleaning_up_plates_and_food",
    4: "can_meat",
    5: "setting_mousetraps",
    6: "hiding_Easter_eggs",
}

DEFAULT_LENGTHS: tuple[int, ...] = (40, 75, 90, 60)  # 40 < the default horizon 50
DEFAULT_TASKS: tuple[int, ...] = (1, 6, 6, 6)
V21_CHUNKS_SIZE = 10000  # BEHAVIOR: episode_chunk = episode_index // 10000 = task id


def task_name(task_id: int) -> str:
    return TASK_NAMES.get(task_id, f"behavior_task_{task_id:02d}")


@dataclass(frozen=True)
class SyntheticConfig:
    """What to build. Lengths and task ids are per episode (cycled when shorter than `episodes`)."""

    layout: str = "v3.0"  # "v3.0" or "v2.1"
    release: str = "2025"  # BEHAVIOR release whose state layout to write: "2025" (256 dims) or "2026" (61)
    episodes: int | None = None  # default: len(lengths)
    lengths: tuple[int, ...] = DEFAULT_LENGTHS  # frames per episode
    tasks: tuple[int, ...] = DEFAULT_TASKS  # BEHAVIOR task id per episode
    # free-text task strings, one per entry of `tasks`, instead of BEHAVIOR's names (empty: BEHAVIOR's)
    task_names: tuple[str, ...] = ()
    head_size: int = 64  # head camera height = width, px (real data: 720)
    wrist_size: int = 48  # wrist cameras height = width, px (real data: 480)
    depth: bool = True  # write the depth video (observation.images.depth.head) readers must ignore
    seed: int = 0
    fps: int = FPS
    # v3.0 only: episodes per data parquet / per mp4 file (0 = all in one file, like lerobot's
    # size-based rotation on a small dataset). Different values put boundaries at different episodes.
    episodes_per_data_file: int = 0
    episodes_per_video_file: int = 0
    chunks_size: int = 1000  # v3.0: files per chunk folder (lerobot's default 1000)
    crf: int = 30  # AV1 quality (lerobot default 30)
    gop: int = 2  # AV1 keyframe interval (lerobot default 2)
    # SVT-AV1 preset; None = lerobot's default 12 up to 256 px, 8 above: at preset 12 the inter frames
    # may leave a large flat region of these synthetic images at its previous level (seen at
    # 360-720 px), which would break the pixel code; preset 8 encodes them faithfully.
    preset: int | None = None
    # v2.1: encoding threads over (episode, camera); 0 = min(4, cores). (v3.0: lerobot's writer
    # encodes each video key of an episode on its own thread.)
    workers: int = 0

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.release not in RELEASES:
            raise ValueError(f"release must be one of {tuple(RELEASES)}, got {self.release!r}")
        if self.layout not in RELEASE_LAYOUTS[self.release]:
            raise ValueError(
                f"the {self.release} release is LeRobot {' / '.join(RELEASE_LAYOUTS[self.release])} only, "
                f"not {self.layout} (use layout v3.0)"
            )
        if not self.lengths or any(int(n) < 1 for n in self.lengths):
            raise ValueError(f"episode lengths must be >= 1, got {self.lengths}")
        if not self.tasks or any(not 0 <= int(t) < 100 for t in self.tasks):
            raise ValueError(f"task ids must be in 0..99, got {self.tasks}")
        if self.task_names and (
            len(self.task_names) != len(self.tasks)
            or len(set(zip(self.tasks, self.task_names, strict=True))) != len(set(self.tasks))
        ):
            raise ValueError(f"give one task name per task id: {self.task_names} for {self.tasks}")
        if self.episodes is not None and self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if min(self.head_size, self.wrist_size) < 16:
            raise ValueError("camera sizes must be >= 16 px (the pixel code needs room)")
        if self.head_size % 2 or self.wrist_size % 2:
            raise ValueError("camera sizes must be even (yuv420p)")
        if self.episodes_per_data_file < 0 or self.episodes_per_video_file < 0:
            raise ValueError("episodes per file must be >= 0")

    def svt_preset(self) -> int:
        if self.preset is not None:
            return self.preset
        return 12 if max(self.head_size, self.wrist_size) <= 256 else 8

    @property
    def num_episodes(self) -> int:
        return self.episodes if self.episodes is not None else len(self.lengths)

    @property
    def state_layout(self) -> StateLayout:
        return RELEASES[self.release]

    def camera_sizes(self) -> dict[str, tuple[int, int]]:
        return {
            HEAD_KEY: (self.head_size, self.head_size),
            LEFT_WRIST_KEY: (self.wrist_size, self.wrist_size),
            RIGHT_WRIST_KEY: (self.wrist_size, self.wrist_size),
        }


@dataclass
class SyntheticEpisode:
    ordinal: int  # position in the dataset (0..N-1)
    episode_index: int  # as written in this dataset (v2.1: task*10000 + 10n; v3.0: ordinal)
    length: int
    task_id: int  # BEHAVIOR task id
    task_index: int  # as written in this dataset (v2.1: task id; v3.0: dense index)
    task: str
    dataset_from_index: int  # global `index` of the first frame
    data_file: str  # path relative to the root
    video_files: dict[str, str] = field(default_factory=dict)  # video key -> path relative to root
    from_timestamps: dict[str, float] = field(default_factory=dict)  # video key -> start in its file, s
    release: str = "2025"  # whose state layout `states()` is on

    @property
    def state_layout(self) -> StateLayout:
        return RELEASES[self.release]

    def states(self) -> np.ndarray:
        return expected_states(self.episode_index, np.arange(self.length), self.state_layout)

    def actions(self) -> np.ndarray:
        return expected_actions(self.episode_index, np.arange(self.length))


@dataclass
class SyntheticDatasetInfo:
    root: Path
    layout: str
    fps: int
    episodes: list[SyntheticEpisode]
    camera_sizes: dict[str, tuple[int, int]]  # rgb video key -> (height, width)
    depth_keys: list[str]
    tasks: dict[int, str]  # task_index (as written) -> task string
    config: SyntheticConfig

    @property
    def release(self) -> str:
        return self.config.release

    @property
    def state_layout(self) -> StateLayout:
        return self.config.state_layout

    @property
    def episode_indices(self) -> list[int]:
        return [e.episode_index for e in self.episodes]

    @property
    def lengths(self) -> list[int]:
        return [e.length for e in self.episodes]

    @property
    def total_frames(self) -> int:
        return sum(self.lengths)

    @property
    def rgb_keys(self) -> list[str]:
        return list(self.camera_sizes)

    def episode(self, episode_index: int) -> SyntheticEpisode:
        for e in self.episodes:
            if e.episode_index == episode_index:
                return e
        raise KeyError(f"no episode {episode_index} in {self.root}")

    def to_json(self) -> dict:
        return {
            "root": str(self.root),
            "layout": self.layout,
            "release": self.release,
            "state_dim": self.state_layout.dim,
            "fps": self.fps,
            "episodes": [asdict(e) for e in self.episodes],
            "camera_sizes": {k: list(v) for k, v in self.camera_sizes.items()},
            "depth_keys": self.depth_keys,
            "tasks": {str(k): v for k, v in self.tasks.items()},
            "total_frames": self.total_frames,
        }


def plan_episodes(config: SyntheticConfig) -> list[SyntheticEpisode]:
    """The episodes to write, in dataset order: indices, lengths and tasks as the layout numbers them
    (v2.1: BEHAVIOR's ``task * 10000 + 10 n`` and task ids; v3.0: ``0..N-1`` and dense task indices)."""
    n = config.num_episodes
    lengths = [int(config.lengths[i % len(config.lengths)]) for i in range(n)]
    task_ids = [int(config.tasks[i % len(config.tasks)]) for i in range(n)]
    names = dict(zip(config.tasks, config.task_names, strict=True)) if config.task_names else {}
    if config.layout == "v2.1":
        counters: dict[int, int] = {}
        indices = []
        for t in task_ids:
            k = counters.get(t, 0)
            counters[t] = k + 1
            if 10 * k >= V21_CHUNKS_SIZE:
                raise ValueError(f"too many episodes for task {t} (BEHAVIOR numbering allows 1000)")
            indices.append(t * V21_CHUNKS_SIZE + 10 * k)
        # the release lists episodes by episode index
        order = sorted(range(n), key=lambda i: indices[i])
        task_index = {t: t for t in task_ids}
    else:
        indices = list(range(n))
        order = list(range(n))
        task_index = {}
        for t in task_ids:
            task_index.setdefault(t, len(task_index))  # lerobot: dense, by first appearance
    episodes, start = [], 0
    for ordinal, i in enumerate(order):
        index = indices[i] if config.layout == "v2.1" else ordinal
        t = task_ids[i]
        episodes.append(
            SyntheticEpisode(
                ordinal=ordinal,
                episode_index=index,
                length=lengths[i],
                task_id=t,
                task_index=task_index[t],
                task=names.get(t) or task_name(t),
                dataset_from_index=start,
                data_file="",
                release=config.release,
            )
        )
        start += lengths[i]
    return episodes
