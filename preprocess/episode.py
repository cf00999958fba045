"""Process one episode: parquet columns + the three camera videos -> one per-episode work tar.

The three cameras are decoded in lock-step (three generators zipped), each frame is resized and
JPEG-encoded and the sample is handed to the tar writer at once, so memory does not grow with
the episode's length (only its parquet columns are held: (L, 256) floats).

Per episode, in the work directory:
  episode_<index:08d>.npz   full-rate filtered state (L, S) and actions (L, 23) as float64 (stats)
  episode_<index:08d>.json  what was written (samples, bytes, task, source video bytes, seconds)
  episode_<index:08d>.tar   the samples (frames 0, stride, 2*stride, ...), written last: its
                            presence (temp + rename) marks the episode done for `--resume`. The
                            json lists each sample's tar bytes and payload, so the final stage copies
                            samples by size (`WorkTar`) without parsing a tar member.
  episode_<index:08d>.skipped.json   instead of the above, when `--skip-bad-episodes` skipped it
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from preprocess.images import encode_rgb_jpeg
from preprocess.skills import EpisodeSkills, annotation_file, read_episode_skills
from preprocess.source import (
    EpisodeData,
    EpisodeDataError,
    EpisodeRef,
    SourceDataset,
    SourceError,
    VideoRef,
    first_non_finite,
)
from preprocess.tasks import episode_identity, episode_task
from preprocess.video import iter_episode_frames
from schemas.r1pro import ACTION_DIM, ACTION_KEY, STATE_KEY
from schemas.sample import SampleMeta, progress, sample_key, temporal_weight
from schemas.tasks import EPISODES_PER_TASK_ID, TaskInfo
from shards.codec import encode_sample, retain_freed_memory
from shards.writer import RawSample, atomic_write_bytes, atomic_write_text, encode_tar_sample, write_tar


@dataclass(frozen=True)
class CameraPlan:
    """One camera as stored: its short name, source video key and stored size."""

    name: str
    video_key: str
    height: int
    width: int


@dataclass(frozen=True)
class EpisodeOptions:
    """Everything a worker needs to process an episode (picklable)."""

    dataset_path: str
    state_dim: int  # of the dataset's state layout (`schemas.r1pro.StateLayout.dim`)
    state_indices: tuple[int, ...]
    horizon: int
    temporal_alpha: float
    frame_stride: int
    jpeg_quality: int
    cameras: tuple[CameraPlan, ...]
    decoder_threads: int = 0  # per video decoder; 0 = one per core (see preprocess.video)
    tasks: dict[int, TaskInfo] = field(default_factory=dict)  # dataset task index -> task (preprocess.tasks)
    release: str = "2025"  # the state layout's release: how episode identities are numbered


@dataclass
class EpisodeResult:
    episode_index: int  # the dataset's own index (names the work files)
    length: int
    samples: int
    tar_bytes: int
    task_index: int  # the evaluator's task id (the dataset's own index for a name outside the list)
    task: str  # the prompt trained on
    source_video_bytes: int
    seconds: float
    # each sample's tar bytes (headers + padded members) and payload (member bytes), in order
    sample_bytes: list[int] = field(default_factory=list)
    sample_payloads: list[int] = field(default_factory=list)
    identity: int | None = None  # the episode's index across the release (samples' episode_index)
    skills: dict[str, int] = field(default_factory=dict)  # samples per annotated skill
    skill_quirks: dict[str, int] = field(default_factory=dict)  # preprocess.skills.QUIRKS met

    @property
    def key(self) -> int:
        """The episode index its samples carry (records written before identities: the dataset's)."""
        return self.episode_index if self.identity is None else self.identity

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class WorkPaths:
    """One episode's work files (module docstring)."""

    tar: Path
    npz: Path
    json: Path
    skipped: Path


def work_paths(work_dir: Path, episode_index: int) -> WorkPaths:
    stem = f"episode_{episode_index:08d}"
    return WorkPaths(
        tar=work_dir / f"{stem}.tar",
        npz=work_dir / f"{stem}.npz",
        json=work_dir / f"{stem}.json",
        skipped=work_dir / f"{stem}.skipped.json",
    )


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def action_chunk(actions: np.ndarray, start: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Actions [start, start+H) of the episode, past-the-end steps repeat the last action (and are flagged)."""
    length = len(actions)
    steps = np.arange(start, start + horizon)
    is_pad = steps >= length
    chunk = actions[np.minimum(steps, length - 1)]
    return chunk, is_pad


_SOURCES: dict[str, SourceDataset] = {}


def open_source(path: str) -> SourceDataset:
    """One parsed dataset per process (workers process many episodes of the same dataset)."""
    if path not in _SOURCES:
        _SOURCES[path] = SourceDataset(path)
    return _SOURCES[path]


def check_values(
    episode_index: int, path: Path, field: str, values: np.ndarray, dims: tuple[int, ...]
) -> None:
    where = first_non_finite(values)
    if where is not None:
        frame, col = where
        raise EpisodeDataError(
            f"{path}: episode {episode_index} frame {frame} field {field!r} dim {dims[col]} is "
            f"{values[frame, col]} (expected a finite number)",
            episode_index,
        )


@dataclass(frozen=True)
class Episode:
    """One episode read and checked: its columns as samples use them and what they carry besides."""

    index: int  # the dataset's own (names the work files)
    identity: int  # across the release (the samples' episode_index)
    ref: EpisodeRef
    length: int  # L, its frames
    state: np.ndarray  # (L, S) the filtered state, as read
    action: np.ndarray  # (L, 23) as read
    timestamp: np.ndarray  # (L,)
    task: TaskInfo | None
    skills: EpisodeSkills
    videos: tuple[VideoRef, ...]  # per camera of `EpisodeOptions.cameras`


class SampleSizes:
    """Each sample's tar bytes and payload, recorded as the samples pass on to the tar writer: the
    episode's record lists them, so the final stage copies samples without parsing a member."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.payloads: list[int] = []

    def record(self, samples: Iterator[dict]) -> Iterator[RawSample]:
        for sample in samples:
            raw = encode_tar_sample(sample)
            self.sizes.append(len(raw.data))
            self.payloads.append(raw.payload)
            yield raw


def process_episode(
    episode_index: int,
    options: EpisodeOptions,
    work_dir: str | Path,
    on_frames: Callable[[int], None] | None = None,
) -> EpisodeResult:
    """Read, decode, encode and write one episode's work files; return what was written.

    `on_frames(n)` is called as frames are decoded (every 16 frames and at the end), for progress."""
    started = time.perf_counter()
    retain_freed_memory()
    source = open_source(options.dataset_path)
    episode = read_checked_episode(source, episode_index, options)
    paths = work_paths(Path(work_dir), episode_index)
    # Stats inputs first: the tar (written last) marks the episode complete.
    atomic_write_bytes(
        paths.npz,
        _npz_bytes(state=episode.state.astype(np.float64), action=episode.action.astype(np.float64)),
    )
    # A per-process temporary name: an orphaned worker of a killed run can never collide with a
    # resumed run writing the same episode.
    part = paths.tar.with_name(f"{paths.tar.name}.{os.getpid()}.part")
    sizes = SampleSizes()
    frames = rgb_frames(episode, options, source.fps)
    try:
        samples = encode_samples(episode, counted_frames(frames, episode, on_frames), options)
        info = write_tar(part, sizes.record(samples), digest=False)  # the final shards carry the sha256
    finally:
        frames.close()  # the decoders' files close now, also when the episode fails part-way
    result = EpisodeResult(
        episode_index=episode_index,
        length=episode.length,
        samples=info.samples,
        tar_bytes=info.bytes,
        task_index=-1 if episode.task is None else episode.task.task_id,
        task="" if episode.task is None else episode.task.prompt,
        source_video_bytes=source.source_video_bytes(episode.ref, [c.video_key for c in options.cameras]),
        seconds=time.perf_counter() - started,
        sample_bytes=sizes.sizes,
        sample_payloads=sizes.payloads,
        identity=episode.identity,
        skills=_kept_skill_counts(episode.skills, options.frame_stride),
        skill_quirks=episode.skills.quirks,
    )
    atomic_write_text(paths.json, json.dumps(result.to_json()))
    os.replace(part, paths.tar)
    return result


def read_checked_episode(source: SourceDataset, episode_index: int, options: EpisodeOptions) -> Episode:
    """The episode's columns (state filtered), checked (dims, finite values), its task, identity,
    skills and camera videos; an `EpisodeDataError` or `SourceError` names what is wrong."""
    ref = source.episode(episode_index)
    data = source.read_episode(episode_index)
    _check_dims(ref, data, options)
    state = data.state[:, np.asarray(options.state_indices, dtype=np.int64)]
    check_values(episode_index, ref.data_path, STATE_KEY, state, options.state_indices)
    check_values(episode_index, ref.data_path, ACTION_KEY, data.action, tuple(range(ACTION_DIM)))
    task = _task_of(source, ref, data, options)
    return Episode(
        index=episode_index,
        identity=episode_identity(episode_index, task, options.release),
        ref=ref,
        length=data.length,
        state=state,
        action=data.action,
        timestamp=data.timestamp,
        task=task,
        skills=_skills_of(source, ref, task, data.length),
        videos=_camera_videos(source, ref, options.cameras),
    )


def _check_dims(ref: EpisodeRef, data: EpisodeData, options: EpisodeOptions) -> None:
    if data.state.shape[1] != options.state_dim:
        raise EpisodeDataError(
            f"{ref.data_path}: episode {ref.index} field {STATE_KEY!r} has {data.state.shape[1]} dims, "
            f"expected {options.state_dim} (the dataset's R1Pro state layout, which the state preset indexes)",
            ref.index,
        )
    if data.action.shape[1] != ACTION_DIM:
        raise EpisodeDataError(
            f"{ref.data_path}: episode {ref.index} field {ACTION_KEY!r} has {data.action.shape[1]} dims, "
            f"expected {ACTION_DIM}",
            ref.index,
        )


def _camera_videos(
    source: SourceDataset, ref: EpisodeRef, cameras: tuple[CameraPlan, ...]
) -> tuple[VideoRef, ...]:
    videos = []
    for camera in cameras:
        video = ref.videos.get(camera.video_key)
        if video is None:
            raise SourceError(f"{source.root}: no video key {camera.video_key!r} for episode {ref.index}")
        if not video.path.is_file():
            raise EpisodeDataError(
                f"{video.path}: missing camera video {camera.video_key!r} for episode {ref.index}", ref.index
            )
        videos.append(video)
    return tuple(videos)


def rgb_frames(
    episode: Episode, options: EpisodeOptions, fps: float
) -> Iterator[tuple[np.ndarray, ...] | None]:
    """Each frame's cameras as RGB arrays, decoded in lock-step (None for frames the stride skips:
    decoded, not converted)."""
    streams = [
        iter_episode_frames(
            video.path,
            episode_index=episode.index,
            length=episode.length,
            fps=fps,
            from_timestamp=video.from_timestamp,
            threads=options.decoder_threads,
        )
        for video in episode.videos
    ]
    for i, cameras in enumerate(zip(*streams, strict=False)):
        yield (
            None if i % options.frame_stride else tuple(frame.to_ndarray(format="rgb24") for frame in cameras)
        )


def counted_frames(
    frames: Iterator[tuple[np.ndarray, ...] | None], episode: Episode, on_frames: Callable[[int], None] | None
) -> Iterator[tuple[int, tuple[np.ndarray, ...] | None]]:
    """(frame index, frame) of each decoded frame, reported to `on_frames` 16 at a time; an episode
    that decoded fewer frames than its length raises."""
    decoded = 0
    for i, rgbs in enumerate(frames):
        decoded = i + 1
        if decoded % 16 == 0 and on_frames is not None:
            on_frames(16)
        yield i, rgbs
    if on_frames is not None and decoded % 16:
        on_frames(decoded % 16)
    if decoded != episode.length:  # the frame generators raise first; this guards the invariant
        raise EpisodeDataError(
            f"episode {episode.index}: decoded {decoded} frames, expected {episode.length}", episode.index
        )


def encode_samples(
    episode: Episode, frames: Iterator[tuple[int, tuple[np.ndarray, ...] | None]], options: EpisodeOptions
) -> Iterator[dict]:
    """The sample of each kept frame: its cameras as JPEG, the state, the action chunk from it, the json."""
    state32 = episode.state.astype(np.float32)
    action32 = episode.action.astype(np.float32)
    task, length = episode.task, episode.length
    for i, rgbs in frames:
        if rgbs is None:
            continue
        images = {
            c.name: encode_rgb_jpeg(rgb, c.height, c.width, options.jpeg_quality)
            for c, rgb in zip(options.cameras, rgbs, strict=True)
        }
        chunk, is_pad = action_chunk(action32, i, options.horizon)
        p = progress(i, length)
        meta = SampleMeta(
            episode_index=episode.identity,
            frame_index=i,
            episode_length=length,
            timestamp=float(episode.timestamp[i]),
            progress=float(p),
            weight=float(temporal_weight(p, options.temporal_alpha)),
            task_index=-1 if task is None else task.task_id,
            task="" if task is None else task.prompt,
            skill=episode.skills.per_frame[i],
        )
        yield encode_sample(
            sample_key(episode.identity, i), images, state32[i], chunk, is_pad, meta.to_json()
        )


def _task_of(
    source: SourceDataset, ref: EpisodeRef, data: EpisodeData, options: EpisodeOptions
) -> TaskInfo | None:
    """The episode's task: its rows' `task_index` when the data has one, else the task its metadata names."""
    if data.task_index is not None and int(data.task_index[0]) in options.tasks:
        return options.tasks[int(data.task_index[0])]
    return episode_task(source, ref, options.tasks)


def _skills_of(source: SourceDataset, ref: EpisodeRef, task: TaskInfo | None, length: int) -> EpisodeSkills:
    """The episode's skill per frame from its annotation file (2026: named by `raw_episode_id`)."""
    # an episode of no known task: its task folder by the 2025 numbering (task_id * 10000 + n)
    task_id = ref.index // EPISODES_PER_TASK_ID["2025"] if task is None else task.task_id
    annotation_id = ref.index if ref.raw_episode_id is None else ref.raw_episode_id
    return read_episode_skills(
        annotation_file(source.root, task_id, annotation_id, ref.annotation_path), length
    )


def _kept_skill_counts(skills: EpisodeSkills, stride: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for skill in skills.per_frame[::stride]:
        if skill is not None:
            counts[skill] = counts.get(skill, 0) + 1
    return counts


class WorkTar:
    """Where each sample of an episode's work tar lies, from the episode's record: the final stage
    cuts samples out by these sizes (one read each, no member parsing), in any order. Raises
    `ValueError` naming the file if the record does not list one sample per kept frame."""

    def __init__(self, path: Path, result: EpisodeResult, frame_stride: int):
        frames = range(0, result.length, frame_stride)
        if len(frames) != len(result.sample_bytes) or len(frames) != len(result.sample_payloads):
            raise ValueError(
                f"{path}: its record lists {len(result.sample_bytes)} samples, "
                f"expected {len(frames)} (frames 0..{result.length - 1}, stride {frame_stride})"
            )
        self.path = path
        self.episode_index = result.key  # what its samples' keys carry
        self.frame_stride = frame_stride
        self.sizes = np.asarray(result.sample_bytes, dtype=np.int64)
        self.payloads = np.asarray(result.sample_payloads, dtype=np.int64)
        self.offsets = np.concatenate(([0], np.cumsum(self.sizes)[:-1])).astype(np.int64)

    def __len__(self) -> int:
        return len(self.sizes)

    def read(self, fd: int, k: int) -> RawSample:
        """Sample `k` (the k-th kept frame) read from `fd`, an open descriptor of the file. It must
        start with its own key's first member header: a short, misaligned or foreign file raises
        `ValueError` naming the file and sample (the bytes `shards.writer.iter_raw_samples` would
        give otherwise)."""
        key = sample_key(self.episode_index, k * self.frame_stride)
        size, offset = int(self.sizes[k]), int(self.offsets[k])
        data = os.pread(fd, size, offset)
        if len(data) != size:
            raise ValueError(f"{self.path}: ends inside sample {key} ({len(data)} of {size} bytes)")
        if not data.startswith(key.encode() + b"."):
            raise ValueError(f"{self.path}: sample {key} is not where its record says (bytes {offset}..)")
        return RawSample(key, data, int(self.payloads[k]))
