"""Plan a run: what to read, what to keep, and which episodes go where.

`make_plan` turns the options (`PreprocessConfig`) into a `Plan`: the source dataset, its R1Pro
state layout and the state dims kept, the cameras and their stored sizes, the selected episodes
(`--episodes`), the held-out split (`--val-episodes`/`--val-fraction`, chosen over the whole
selection with `--seed`, so every partition agrees), then this machine's slice (`--partition K/N`:
the sorted selection's episodes K, K+N, K+2N, ...). Nothing is written here: a bad option, or a
dataset the presets cannot index, is a `PreprocessError` naming the option or the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from preprocess.defaults import DEFAULT_INTERLEAVE_WINDOW, DEFAULT_SHARD_MAX_BYTES, DEFAULT_SHARD_MAX_SAMPLES
from preprocess.episode import CameraPlan, EpisodeOptions
from preprocess.images import DEFAULT_JPEG_QUALITY, ImageSize
from preprocess.source import SourceDataset
from preprocess.tasks import (
    DEFAULT_PROMPT,
    TaskCoverage,
    TaskError,
    episode_task,
    log_coverage,
    resolve_tasks,
    select_tasks,
)
from schemas.errors import B1kError
from schemas.presets import DEFAULT_PRESET, PRESET_NAMES, StateSelection, resolve_state_selection
from schemas.r1pro import (
    ACTION_DIM,
    ACTION_KEY,
    CAMERAS_BY_RELEASE,
    LAYOUTS,
    STATE_KEY,
    Camera,
    LayoutError,
    StateLayout,
    cameras_for_features,
    detect_layout,
)
from schemas.tasks import TaskInfo

log = logging.getLogger(__name__)


class PreprocessError(B1kError, RuntimeError):
    """A run cannot proceed; the message names the file/episode/frame/field and what was expected."""


@dataclass
class PreprocessConfig:
    """The options of a run (the CLI's options, one to one)."""

    dataset_path: str | Path
    output_dir: str | Path
    state_preset: str = DEFAULT_PRESET
    state_indices: str | None = None
    horizon: int = 50
    temporal_alpha: float = 0.0
    image_size: str | None = None
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    frame_stride: int = 1
    episodes: str | None = None
    tasks: str | None = None  # task names or evaluator ids, comma-separated (preprocess.tasks)
    prompt: str = DEFAULT_PROMPT  # what samples are prompted with: the task's "instruction" or "name"
    val_episodes: str | None = None
    val_fraction: float = 0.0
    seed: int = 0
    workers: int | None = None
    decoder_threads: int = 0  # per video decoder; 0 = auto (see episodes.resolve_decoder_threads)
    shard_max_bytes: int = DEFAULT_SHARD_MAX_BYTES
    shard_max_samples: int = DEFAULT_SHARD_MAX_SAMPLES
    partition: str | None = None
    overwrite: bool = False
    resume: bool = False
    skip_bad_episodes: bool = False
    ignore_free_space: bool = False  # start even when the output filesystem looks too small
    interleave_window: int = DEFAULT_INTERLEAVE_WINDOW
    progress: bool = True
    command_line: str = ""

    def fingerprint(self) -> dict:
        """The options that decide the output (what `--resume` must see unchanged)."""
        return {
            "dataset_path": str(Path(self.dataset_path).resolve()),
            "state_preset": self.state_preset,
            "state_indices": self.state_indices,
            "horizon": self.horizon,
            "temporal_alpha": self.temporal_alpha,
            "image_size": ImageSize.parse(self.image_size).describe(),
            "jpeg_quality": self.jpeg_quality,
            "frame_stride": self.frame_stride,
            "episodes": self.episodes,
            "tasks": self.tasks,
            "prompt": self.prompt,
            "val_episodes": self.val_episodes,
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "shard_max_bytes": self.shard_max_bytes,
            "shard_max_samples": self.shard_max_samples,
            "partition": self.partition,
            "skip_bad_episodes": self.skip_bad_episodes,
            "interleave_window": self.interleave_window,
        }


@dataclass
class Plan:
    """What `make_plan` decided; read by every later stage."""

    source: SourceDataset
    selection: StateSelection
    image_size: ImageSize
    cameras: tuple[CameraPlan, ...]
    native_sizes: dict[str, tuple[int, int]]  # camera name -> source (height, width)
    selected: list[int]  # every selected episode (all partitions)
    episodes: list[int]  # this partition's episodes, sorted
    val: set[int]  # held-out episodes (of the whole selection)
    partition: tuple[int, int] | None  # (K, N) of --partition K/N
    options: EpisodeOptions
    warnings: list[str] = field(default_factory=list)
    tasks: dict[int, TaskInfo] = field(default_factory=dict)  # the dataset's task index -> task
    # each listed episode's task (None: its metadata names no task the task list knows)
    episode_tasks: dict[int, TaskInfo | None] = field(default_factory=dict)

    def split_of(self, episode_index: int) -> str:
        return "val" if episode_index in self.val else "train"


# ------------------------------------------------------------------ option parsing
def parse_index_list(text: str, what: str) -> list[int]:
    """`60000,60010:60030` -> [60000, 60010, ..., 60029] (half-open ranges, like --state-indices)."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if ":" in part:
                a, b = (int(x) for x in part.split(":", 1))
                if b <= a:
                    raise PreprocessError(f"{what}: empty range {part!r} (stop must be > start)")
                out.extend(range(a, b))
            else:
                out.append(int(part))
        except ValueError:
            raise PreprocessError(
                f"{what}: cannot parse {part!r}; expected an index like 60010 or a range like 60000:60100"
            ) from None
    if not out:
        raise PreprocessError(f"{what}: selects no episodes")
    return sorted(set(out))


def parse_partition(text: str | None) -> tuple[int, int] | None:
    """`K/N` -> (K, N); None or "" -> None (no partition)."""
    if not text:
        return None
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise PreprocessError(f"--partition {text!r}: expected K/N, e.g. 0/4 (K counts from 0)") from None
    if n < 1 or not 0 <= k < n:
        raise PreprocessError(f"--partition {text!r}: expected 0 <= K < N")
    return k, n


def choose_val(selected: list[int], val_episodes: str | None, val_fraction: float, seed: int) -> set[int]:
    """The held-out episodes: those listed, or a seeded random fraction of the selection."""
    if val_episodes and val_fraction:
        raise PreprocessError("--val-episodes and --val-fraction are exclusive; give one")
    if val_episodes:
        val = set(parse_index_list(val_episodes, "--val-episodes"))
        unknown = sorted(val - set(selected))
        if unknown:
            raise PreprocessError(f"--val-episodes {unknown} are not among the selected episodes")
    elif val_fraction:
        if not 0 < val_fraction < 1:
            raise PreprocessError(f"--val-fraction {val_fraction}: expected a fraction in (0, 1)")
        count = max(1, round(val_fraction * len(selected)))
        rng = np.random.default_rng(seed)
        val = {int(e) for e in rng.permutation(np.asarray(selected, dtype=np.int64))[:count]}
    else:
        val = set()
    if val and len(val) >= len(selected):
        raise PreprocessError(
            f"the held-out split takes all {len(selected)} selected episodes; none left to train on"
        )
    return val


# ------------------------------------------------------------------ the dataset's layout
def detect_state_layout(source: SourceDataset) -> StateLayout:
    """The R1Pro state layout of the dataset: info.json's shape and names of `observation.state`, or,
    when info.json gives no shape, the first episode's state width."""
    info_path = source.root / "meta/info.json"
    shape = source.feature_shape(STATE_KEY)
    if len(shape) > 1:
        raise PreprocessError(f"{info_path}: feature {STATE_KEY!r} has shape {list(shape)}, expected one dim")
    if shape:
        dim, where = shape[0], f"{info_path}: feature {STATE_KEY!r}"
    else:
        first = min(source.episodes, default=None)
        if first is None:
            raise PreprocessError(f"{source.root}: the dataset lists no episodes")
        dim = source.read_episode(first).state.shape[1]
        where = f"{source.episode(first).data_path}: episode {first} field {STATE_KEY!r}"
    try:
        layout = detect_layout(dim, source.features.get(STATE_KEY, {}).get("names"))
    except LayoutError:
        expected = " or ".join(f"[{known.dim}] ({known.describe()})" for known in LAYOUTS.values())
        raise PreprocessError(
            f"{where} has shape [{dim}], expected {expected}: the state presets ({', '.join(PRESET_NAMES)}) "
            "and --state-indices are defined on these R1Pro layouts only"
        ) from None
    log.info("state layout %s (%s)", layout.describe(), where)
    return layout


def _select_state(config: PreprocessConfig, source: SourceDataset, layout: StateLayout) -> StateSelection:
    try:
        return resolve_state_selection(config.state_preset, config.state_indices, layout)
    except ValueError as exc:
        raise PreprocessError(
            f"{exc} (state layout {layout.describe()}, detected in {source.root})"
        ) from None


def _standard_track_warning(selection: StateSelection) -> str | None:
    """The warning for kept dims the BEHAVIOR standard track does not allow (a custom --state-indices)."""
    if not selection.not_standard_track:
        return None
    names = ", ".join(
        n
        for i, n in zip(selection.indices, selection.names, strict=True)
        if i in selection.not_standard_track
    )
    return f"state dims {list(selection.not_standard_track)} ({names}) are not allowed in the BEHAVIOR standard track"


def _check_options(config: PreprocessConfig, source: SourceDataset) -> ImageSize:
    """Checks the action's shape and the numeric options; returns the parsed --image-size."""
    action_shape = source.feature_shape(ACTION_KEY)
    if action_shape and action_shape != (ACTION_DIM,):
        raise PreprocessError(
            f"{source.root / 'meta/info.json'}: feature {ACTION_KEY!r} has shape {list(action_shape)}, expected [{ACTION_DIM}]"
        )
    for name, value in (("--horizon", config.horizon), ("--frame-stride", config.frame_stride)):
        if value < 1:
            raise PreprocessError(f"{name} must be >= 1, got {value}")
    if not 1 <= config.jpeg_quality <= 100:
        raise PreprocessError(f"--jpeg-quality must be in 1..100, got {config.jpeg_quality}")
    try:
        return ImageSize.parse(config.image_size)
    except ValueError as exc:
        raise PreprocessError(str(exc)) from None


def _select_episodes(
    config: PreprocessConfig,
    source: SourceDataset,
    tasks: dict[int, TaskInfo],
    episode_tasks: dict[int, TaskInfo | None],
) -> list[int]:
    """The sorted episodes of --episodes and --tasks (by default every episode on disk). Episodes the
    meta files list but the disk lacks (a partial download) are left out, unless --episodes names
    them: then it is an error."""
    all_episodes = sorted(source.episodes)
    if not all_episodes:
        raise PreprocessError(f"{source.root}: the dataset lists no episodes")
    try:
        wanted_tasks = select_tasks(config.tasks, tasks)
    except TaskError as exc:
        raise PreprocessError(str(exc)) from None
    selected = all_episodes
    if config.episodes:
        selected = parse_index_list(config.episodes, "--episodes")
        unknown = sorted(set(selected) - set(all_episodes))
        if unknown:
            raise PreprocessError(
                f"--episodes {unknown[:20]}{'...' if len(unknown) > 20 else ''} are not in {source.root} "
                f"(it has episodes {all_episodes[0]}..{all_episodes[-1]}, {len(all_episodes)} in all)"
            )
    on_disk = {i for i in selected if source.is_downloaded(i)}
    if config.episodes and len(on_disk) < len(selected):
        absent = sorted(set(selected) - on_disk)
        raise PreprocessError(
            f"--episodes {absent[:20]}: listed in {source.root / 'meta'} but their data files are not on disk "
            f"(e.g. {source.episode(absent[0]).data_path}); download their task chunks first"
        )
    _log_task_coverage(source, tasks, episode_tasks, selected, on_disk)
    chosen = [i for i in selected if i in on_disk and _in_tasks(episode_tasks[i], wanted_tasks)]
    _check_tasks_on_disk(source, tasks, episode_tasks, wanted_tasks, chosen)
    if not chosen:
        raise PreprocessError(
            f"{source.root}: no episode on disk{' of --tasks ' + config.tasks if config.tasks else ''} "
            f"({len(all_episodes)} listed, {len(on_disk)} downloaded)"
        )
    return chosen


def _check_tasks_on_disk(
    source: SourceDataset,
    tasks: dict[int, TaskInfo],
    episode_tasks: dict[int, TaskInfo | None],
    wanted: set[int] | None,
    chosen: list[int],
) -> None:
    """A task --tasks names but the disk lacks is an error naming it (download its chunks first)."""
    if wanted is None:
        return
    present = {task.source_index for i in chosen if (task := episode_tasks[i]) is not None}
    absent = [tasks[i] for i in sorted(wanted - present)]
    if absent:
        names = ", ".join(f"{t.task_id} {t.name}" for t in absent)
        raise PreprocessError(
            f"--tasks: no episode of task {names} is on disk in {source.root} (meta/ describes it: download its "
            "task chunks, or leave it out of --tasks)"
        )


def _in_tasks(task: TaskInfo | None, wanted: set[int] | None) -> bool:
    return wanted is None or (task is not None and task.source_index in wanted)


def _log_task_coverage(
    source: SourceDataset,
    tasks: dict[int, TaskInfo],
    episode_tasks: dict[int, TaskInfo | None],
    listed: list[int],
    on_disk: set[int],
) -> None:
    """Which tasks are on disk (id, name, episodes, frames) and which the meta files describe only."""
    found: dict[int, list[int]] = {}
    absent: dict[int, int] = {}
    for index in listed:
        task = episode_tasks[index]
        key = -1 if task is None else task.source_index
        if index in on_disk:
            found.setdefault(key, []).append(index)
        else:
            absent[key] = absent.get(key, 0) + 1
    coverage = [
        TaskCoverage(
            tasks[key], len(found[key]), sum(source.episode(i).length for i in found[key]), absent.get(key, 0)
        )
        for key in sorted(found, key=lambda k: tasks[k].task_id if k in tasks else -1)
        if key in tasks
    ]
    log_coverage(coverage, [t for i, t in sorted(tasks.items()) if i not in found])
    for task in (tasks[k] for k in found if k in tasks and not tasks[k].known):
        log.warning(
            "warning: task %r is not in the challenge's task list: it keeps the dataset's index %d",
            task.name,
            task.task_id,
        )


def _probe_size(path: Path) -> tuple[int, int] | None:
    try:
        with av.open(str(path)) as container:
            ctx = container.streams.video[0].codec_context
            return int(ctx.height), int(ctx.width)
    except (av.FFmpegError, IndexError, OSError):
        return None


def _release_cameras(source: SourceDataset, layout: StateLayout) -> tuple[Camera, ...]:
    """The three RGB cameras under this dataset's keys: its release's (2026:
    `observation.rgb.*_camera_0`), or the other release's when those are what info.json has."""
    cameras = cameras_for_features(source.features, layout.release)
    if cameras is None:
        expected = "; ".join(
            f"{release}: {', '.join(c.video_key for c in keys)}"
            for release, keys in CAMERAS_BY_RELEASE.items()
        )
        raise PreprocessError(
            f"{source.root / 'meta/info.json'}: the video features {source.video_keys} hold no release's three "
            f"RGB cameras (expected {expected})"
        )
    return cameras


def _plan_cameras(
    source: SourceDataset, cameras: tuple[Camera, ...], first_episode: int, image_size: ImageSize
) -> tuple[list[CameraPlan], dict[str, tuple[int, int]]]:
    """Each camera's stored size, from its native size in the first episode's video (probed, so a
    dataset whose info.json is wrong about it still gets the size its frames have)."""
    planned = []
    native_sizes = {}
    first = source.episode(first_episode)
    for camera in cameras:
        ref = first.videos.get(camera.video_key)
        if ref is None:
            raise PreprocessError(
                f"{source.root / 'meta/info.json'}: no 'video_path' template (or no video metadata for "
                f"{camera.video_key!r} in episode {first.index}); cannot locate camera videos"
            )
        if not ref.path.is_file():
            raise PreprocessError(
                f"{ref.path}: missing camera video {camera.video_key!r} for episode {first.index}"
            )
        native = _probe_size(ref.path)
        if native is None:
            shape = source.feature_shape(camera.video_key)
            native = (shape[0], shape[1]) if len(shape) >= 2 else (camera.height, camera.width)
        height, width = image_size.target(*native)
        planned.append(CameraPlan(camera.name, camera.video_key, height, width))
        native_sizes[camera.name] = native
    return planned, native_sizes


# ------------------------------------------------------------------ the plan
def make_plan(config: PreprocessConfig) -> Plan:
    source = SourceDataset(config.dataset_path)
    layout = detect_state_layout(source)
    selection = _select_state(config, source, layout)
    warnings: list[str] = []
    warning = _standard_track_warning(selection)
    if warning:
        warnings.append(warning)
        log.warning("warning: %s", warning)
    image_size = _check_options(config, source)
    release_cameras = _release_cameras(source, layout)
    try:
        tasks = resolve_tasks(source, config.prompt)
    except TaskError as exc:
        raise PreprocessError(str(exc)) from None

    episode_tasks = {i: episode_task(source, ref, tasks) for i, ref in source.episodes.items()}
    selected = _select_episodes(config, source, tasks, episode_tasks)
    val = choose_val(selected, config.val_episodes, config.val_fraction, config.seed)
    partition = parse_partition(config.partition)
    episodes = selected[partition[0] :: partition[1]] if partition else list(selected)
    if not episodes:
        raise PreprocessError(
            f"--partition {config.partition}: no episodes fall in this partition ({len(selected)} selected)"
        )

    cameras, native_sizes = _plan_cameras(source, release_cameras, episodes[0], image_size)
    options = EpisodeOptions(
        dataset_path=str(source.root),
        state_dim=layout.dim,
        state_indices=selection.indices,
        horizon=config.horizon,
        temporal_alpha=float(config.temporal_alpha),
        frame_stride=config.frame_stride,
        jpeg_quality=config.jpeg_quality,
        cameras=tuple(cameras),
        tasks=tasks,
        release=layout.release,
    )
    return Plan(
        source=source,
        selection=selection,
        image_size=image_size,
        cameras=tuple(cameras),
        native_sizes=native_sizes,
        selected=selected,
        episodes=episodes,
        val=val,
        partition=partition,
        options=options,
        warnings=warnings,
        tasks=tasks,
        episode_tasks=episode_tasks,
    )
