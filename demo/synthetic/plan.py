"""What a synthetic dataset holds: feature keys, the build config, the episode plan, the result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from demo.synthetic.codes import expected_actions, expected_states
from demo.synthetic.release import (
    PUBLISHED_LAYOUTS,
    UNBUILT_EPISODE_FRAMES,
    global_episode_index,
    instruction,
    raw_episode_id,
    task_instance_id,
)
from schemas.errors import B1kError
from schemas.r1pro import CAMERAS_2025, CAMERAS_2026, FPS, LAYOUT_2025, LAYOUT_2026, StateLayout
from schemas.tasks import CHALLENGE_TASKS

# "v3.0": lerobot's own writer (2025 camera keys, AV1); "v2.1": the 2025 release; "published" and
# "per-task": the 2026 release as published and its older per-task copies (synthetic_v30_2026)
LAYOUTS = ("v3.0", "v2.1", *PUBLISHED_LAYOUTS)
# BEHAVIOR Challenge release -> the state layout it records (and the on-disk layouts it ships in,
# its default first). The 2026 release's "v3.0" is a generic lerobot-written set with the 61-dim
# state (2025 keys, AV1): not the release as published, kept for the tests written against it.
RELEASES: dict[str, StateLayout] = {"2025": LAYOUT_2025, "2026": LAYOUT_2026}
RELEASE_LAYOUTS: dict[str, tuple[str, ...]] = {"2025": ("v3.0", "v2.1"), "2026": (*PUBLISHED_LAYOUTS, "v3.0")}
RGB_KEYS: tuple[str, ...] = tuple(c.video_key for c in CAMERAS_2025)  # head, left_wrist, right_wrist
HEAD_KEY, LEFT_WRIST_KEY, RIGHT_WRIST_KEY = RGB_KEYS
RGB_KEYS_2026: tuple[str, ...] = tuple(c.video_key for c in CAMERAS_2026)
DEPTH_KEY = "observation.images.depth.head"
CAM_REL_POSES_KEY = "observation.cam_rel_poses"
TASK_INFO_KEY = "observation.task_info"
# camera code in the pixels: 0 head, 1 left wrist, 2 right wrist, under either release's key
CAMERA_CODES: dict[str, int] = {
    camera.video_key: code for cameras in (CAMERAS_2025, CAMERAS_2026) for code, camera in enumerate(cameras)
}

DEFAULT_LENGTHS: tuple[int, ...] = (40, 75, 90, 60)  # 40 < the default horizon 50
DEFAULT_TASKS: tuple[int, ...] = (1, 6, 6, 6)
V21_CHUNKS_SIZE = 10000  # BEHAVIOR: episode_chunk = episode_index // 10000 = task id


def task_name(task_id: int) -> str:
    """The challenge's name of evaluator task id `task_id` (schemas.tasks)."""
    return CHALLENGE_TASKS[task_id]


class SyntheticConfigError(B1kError, ValueError):
    """Options that no synthetic dataset can have (the message names the option)."""


# The 2026 layouts' HEVC (PyAV 15's libx265): frames smaller than x265's 64 px coding tree unit
# corrupt its heap (SIGABRT freeing the lookahead: 20 encodes in 20 at 48 px) or encode differently from
# run to run (4 pixel variants in 20 encodes of the same 32 px frames; a frame's code then failed to
# read 1 run in 5). At 64 px and above: 100 encodes in 100 clean, 1 variant in 20.
MIN_HEVC_SIDE = 64


@dataclass(frozen=True)
class SyntheticConfig:
    """What to build. Lengths and task ids are per episode (cycled when shorter than `episodes`)."""

    # on-disk layout, one of RELEASE_LAYOUTS[release]; "" = the release's default (2025: "v3.0",
    # 2026: "published")
    layout: str = ""
    release: str = "2025"  # BEHAVIOR release whose state layout to write: "2025" (256 dims) or "2026" (61)
    episodes: int | None = None  # default: len(lengths)
    lengths: tuple[int, ...] = DEFAULT_LENGTHS  # frames per episode
    tasks: tuple[int, ...] = DEFAULT_TASKS  # BEHAVIOR task id per episode
    # free-text task strings, one per entry of `tasks`, instead of BEHAVIOR's names (empty: BEHAVIOR's)
    task_names: tuple[str, ...] = ()
    head_size: int = 64  # head camera height = width, px (real data: 720)
    # wrist cameras height = width, px (real data: 480); 0 = the layout's: 48 (AV1), 64 (the 2026 HEVC)
    wrist_size: int = 0
    depth: bool = True  # write the depth video (observation.images.depth.head) readers must ignore
    seed: int = 0
    fps: int = FPS
    # v3.0 layouts: episodes per data parquet / per mp4 file (0 = all in one file, like lerobot's
    # size-based rotation on a small dataset); "published": per task chunk. Different values put
    # boundaries at different episodes.
    episodes_per_data_file: int = 0
    episodes_per_video_file: int = 0
    chunks_size: int = 1000  # v3.0: files per chunk folder (lerobot's default 1000)
    crf: int = 30  # AV1 / HEVC quality (lerobot's default and the 2026 release's: 30)
    gop: int = 0  # keyframe interval; 0 = the layout's (AV1: lerobot's 2; the 2026 release's HEVC: 8)
    annotations: bool = True  # write the skill annotations (annotations/task-NNNN/*.json)
    # SVT-AV1 preset; None = lerobot's default 12 up to 256 px, 8 above: at preset 12 the inter frames
    # may leave a large flat region of these synthetic images at its previous level (seen at
    # 360-720 px), which would break the pixel code; preset 8 encodes them faithfully.
    preset: int | None = None
    # v2.1: encoding threads over (episode, camera); 0 = min(4, cores). (v3.0: lerobot's writer
    # encodes each video key of an episode on its own thread.)
    workers: int = 0

    def __post_init__(self):
        if self.release not in RELEASES:
            raise SyntheticConfigError(f"release must be one of {tuple(RELEASES)}, got {self.release!r}")
        if not self.layout:
            object.__setattr__(self, "layout", RELEASE_LAYOUTS[self.release][0])
        if not self.wrist_size:
            object.__setattr__(self, "wrist_size", MIN_HEVC_SIDE if self.published else 48)
        if self.layout not in LAYOUTS:
            raise SyntheticConfigError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.layout not in RELEASE_LAYOUTS[self.release]:
            raise SyntheticConfigError(
                f"the {self.release} release comes in the layouts {', '.join(RELEASE_LAYOUTS[self.release])}, "
                f"not {self.layout}"
            )
        if self.layout == "per-task" and len(set(self.tasks)) != 1:
            raise SyntheticConfigError(f"a per-task copy holds one task, got tasks {self.tasks}")
        if self.published and not 0 <= self.crf <= 51:
            raise SyntheticConfigError(f"HEVC (the 2026 layouts) takes a CRF of 0..51, got {self.crf}")
        if self.gop < 0:
            raise SyntheticConfigError(f"gop must be >= 0, got {self.gop}")
        if not self.lengths or any(int(n) < 1 for n in self.lengths):
            raise SyntheticConfigError(f"episode lengths must be >= 1, got {self.lengths}")
        if not self.tasks or any(not 0 <= int(t) < 100 for t in self.tasks):
            raise SyntheticConfigError(f"task ids must be in 0..99, got {self.tasks}")
        if self.task_names and (
            len(self.task_names) != len(self.tasks)
            or len(set(zip(self.tasks, self.task_names, strict=True))) != len(set(self.tasks))
        ):
            raise SyntheticConfigError(f"give one task name per task id: {self.task_names} for {self.tasks}")
        if self.episodes is not None and self.episodes < 1:
            raise SyntheticConfigError(f"episodes must be >= 1, got {self.episodes}")
        if min(self.head_size, self.wrist_size) < 16:
            raise SyntheticConfigError("camera sizes must be >= 16 px (the pixel code needs room)")
        if self.published and min(self.head_size, self.wrist_size) < MIN_HEVC_SIDE:
            raise SyntheticConfigError(
                f"camera sizes must be >= {MIN_HEVC_SIDE} px in the 2026 layouts (x265 misbehaves on frames "
                "smaller than its 64 px coding tree unit)"
            )
        if self.head_size % 2 or self.wrist_size % 2:
            raise SyntheticConfigError("camera sizes must be even (yuv420p)")
        if self.episodes_per_data_file < 0 or self.episodes_per_video_file < 0:
            raise SyntheticConfigError("episodes per file must be >= 0")

    @property
    def published(self) -> bool:
        """Written as the 2026 release publishes it (HEVC, the 2026 keys, task chunks or a per-task copy)."""
        return self.layout in PUBLISHED_LAYOUTS

    def keyframe_interval(self) -> int:
        return self.gop or (8 if self.published else 2)

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

    @property
    def rgb_keys(self) -> tuple[str, ...]:
        """The RGB video keys written: the 2026 ones in the published layouts, else the 2025 ones."""
        return RGB_KEYS_2026 if self.published else RGB_KEYS

    def camera_sizes(self) -> dict[str, tuple[int, int]]:
        head, left, right = self.rgb_keys
        return {
            head: (self.head_size, self.head_size),
            left: (self.wrist_size, self.wrist_size),
            right: (self.wrist_size, self.wrist_size),
        }


@dataclass
class SyntheticEpisode:
    ordinal: int  # position in the dataset (0..N-1)
    episode_index: (
        int  # as written in this dataset (v2.1: task*10000 + 10n; v3.0: ordinal; 2026: 200*task + demo)
    )
    length: int
    task_id: int  # BEHAVIOR task id (the evaluator's)
    task_index: int  # as written in this dataset (v2.1, published: task id; v3.0: dense index; per-task: 0)
    task: str  # the dataset's task string (meta/tasks.parquet)
    dataset_from_index: int  # global `index` of the first frame
    data_file: str  # path relative to the root
    video_files: dict[str, str] = field(default_factory=dict)  # video key -> path relative to root
    from_timestamps: dict[str, float] = field(default_factory=dict)  # video key -> start in its file, s
    release: str = "2025"  # whose state layout `states()` is on
    # The episode index the alignment codes (pixels, state, action) carry: the release-wide identity,
    # 200 * task + demo, in the 2026 layouts (so a per-task copy's episode 0 of two tasks differ);
    # `episode_index` elsewhere.
    code_index: int = -1
    demo: int = (
        0  # the demo's number within its task (2026: episode_index % 200; 2025: n of task*10000 + 10n)
    )
    raw_episode_id: int | None = None  # 2026: 10000 * task + 10 * (demo + 1); None in 2025 layouts
    task_instance_id: int | None = None  # 2026 meta/episodes column; None in 2025 layouts
    instruction: str = ""  # 2026: meta/tasks.jsonl's instruction; 2025: the task string
    annotation_file: str | None = None  # relative path of its skill annotation (None: none written)

    def __post_init__(self):
        if self.code_index < 0:
            self.code_index = self.episode_index
        self.instruction = self.instruction or self.task

    @property
    def state_layout(self) -> StateLayout:
        return RELEASES[self.release]

    def states(self) -> np.ndarray:
        return expected_states(self.code_index, np.arange(self.length), self.state_layout)

    def actions(self) -> np.ndarray:
        return expected_actions(self.code_index, np.arange(self.length))


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
    # episode_index (as written) -> its skill annotation (synthetic_annotations.EpisodeAnnotation);
    # empty when none were written
    annotations: dict = field(default_factory=dict)

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

    def expected_skills(self, episode_index: int) -> list[str | None]:
        """The skill description a reader should give each frame of the episode (`episode_index` as
        written): the first listed valid segment covering it, None where none does or the
        annotation is missing."""
        annotation = self.annotations.get(episode_index)
        return annotation.per_frame if annotation else [None] * self.episode(episode_index).length

    def expected_skill(self, episode_index: int, frame_index: int) -> str | None:
        return self.expected_skills(episode_index)[frame_index]

    def skill_quirks(self) -> dict[str, int]:
        """The quirks written over the dataset: {"missing", "nested", "empty", "null"} -> count."""
        totals = dict.fromkeys(("missing", "nested", "empty", "null"), 0)
        for annotation in self.annotations.values():
            for name, count in annotation.quirks.as_dict().items():
                totals[name] += count
        return totals

    @property
    def instructions(self) -> dict[int, str]:
        """task_index (as written) -> the task's instruction (meta/tasks.jsonl; 2025: the task string)."""
        return {e.task_index: e.instruction for e in self.episodes}

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
    (v2.1: BEHAVIOR's ``task * 10000 + 10 n`` and task ids; v3.0: ``0..N-1`` and dense task indices;
    published: ``200 * task + demo`` and task ids, by episode index; per-task: ``0..N-1``, task 0)."""
    n = config.num_episodes
    lengths = [int(config.lengths[i % len(config.lengths)]) for i in range(n)]
    task_ids = [int(config.tasks[i % len(config.tasks)]) for i in range(n)]
    demos = _demo_numbers(task_ids)
    if config.published:
        return _plan_2026(config, lengths, task_ids, demos)
    names = dict(zip(config.tasks, config.task_names, strict=True)) if config.task_names else {}
    if config.layout == "v2.1":
        if max(demos) * 10 >= V21_CHUNKS_SIZE:
            raise ValueError("too many episodes for one task (BEHAVIOR numbering allows 1000)")
        indices = [t * V21_CHUNKS_SIZE + 10 * k for t, k in zip(task_ids, demos, strict=True)]
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
        t = task_ids[i]
        episodes.append(
            SyntheticEpisode(
                ordinal=ordinal,
                episode_index=indices[i] if config.layout == "v2.1" else ordinal,
                length=lengths[i],
                task_id=t,
                task_index=task_index[t],
                task=names.get(t) or task_name(t),
                dataset_from_index=start,
                data_file="",
                release=config.release,
                demo=demos[i],
            )
        )
        start += lengths[i]
    return episodes


def _demo_numbers(task_ids: list[int]) -> list[int]:
    """Each episode's number among its task's episodes, in the order given."""
    counters: dict[int, int] = {}
    demos = []
    for t in task_ids:
        demos.append(counters.get(t, 0))
        counters[t] = demos[-1] + 1
    return demos


def _plan_2026(
    config: SyntheticConfig, lengths: list[int], task_ids: list[int], demos: list[int]
) -> list[SyntheticEpisode]:
    """The published layout lists episodes by global index ``200 * task + demo`` and numbers frames
    across the whole release (demos it lists but does not build count UNBUILT_EPISODE_FRAMES); the
    per-task copy renumbers its episodes and frames from 0 and its only task 0."""
    per_task = config.layout == "per-task"
    order = sorted(range(len(lengths)), key=lambda i: global_episode_index(task_ids[i], demos[i]))
    episodes = []
    built_before = 0  # frames of the built episodes before this one
    for ordinal, i in enumerate(order):
        t, demo = task_ids[i], demos[i]
        release_index = global_episode_index(t, demo)
        unbuilt_before = 0 if per_task else release_index - ordinal  # release episodes before, not built
        episodes.append(
            SyntheticEpisode(
                ordinal=ordinal,
                episode_index=ordinal if per_task else release_index,
                length=lengths[i],
                task_id=t,
                task_index=0 if per_task else t,
                task=task_name(t),
                dataset_from_index=built_before + unbuilt_before * UNBUILT_EPISODE_FRAMES,
                data_file="",
                release=config.release,
                code_index=release_index,
                demo=demo,
                raw_episode_id=raw_episode_id(t, demo),
                task_instance_id=task_instance_id(demo),
                instruction=instruction(t),
            )
        )
        built_before += lengths[i]
    return episodes
