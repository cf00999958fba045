"""Open a LeRobot dataset (v2.1 or v3.0) as BEHAVIOR publishes it, and read one episode's columns.

Everything here follows `meta/info.json`: the codebase version picks the layout, and the
`data_path`/`video_path` templates say where files are (BEHAVIOR's v2.1 release names its chunk
folders `task-0006`; we never hard-code that). Only pyarrow is used (no `datasets`, no torch).

v2.1: `meta/episodes.jsonl` + `meta/tasks.jsonl`; one parquet and one mp4 per camera per episode;
      an episode's video starts at t=0.
v3.0: `meta/episodes/**/*.parquet` + `meta/tasks.parquet`; many episodes per parquet and per mp4;
      an episode's frames are the video's frames from `videos/<key>/from_timestamp` on, and its
      rows are the data file's rows whose `episode_index` is this episode (read alone, via a
      pyarrow filter, so a worker never loads other episodes' rows). The 2026 release adds
      `meta/tasks.jsonl` (`task_name` and the natural-language instruction `task`) and, per episode,
      `raw_episode_id` and `annotation_path`; they are read when present.

A partial download (the 2026 release in task chunks: the meta files describe all 100 tasks while only
some chunks are on disk) is the normal case: `is_downloaded` tells an episode whose data file is absent
from one that is there and broken.

Parquet is read through `pq.ParquetFile`, never `pq.read_table`: the latter goes through
`pyarrow.dataset`, whose import pulls in pandas (~0.25 s CPU in the main process and again in every
episode worker, for nothing).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.errors import B1kError
from schemas.r1pro import ACTION_KEY, STATE_KEY

SUPPORTED_VERSIONS = ("v2.1", "v3.0")
INFO_PATH = "meta/info.json"


class SourceError(B1kError, RuntimeError):
    """The source dataset is missing something or does not look like what BEHAVIOR.md describes."""


class EpisodeDataError(SourceError):
    """One episode's data is unusable (bad values, short video, ...). `--skip-bad-episodes` may skip it."""

    def __init__(self, message: str, episode_index: int | None = None):
        super().__init__(message)
        self.episode_index = episode_index

    def __reduce__(self):  # keep it picklable across worker processes
        return (type(self), (str(self), self.episode_index))


@dataclass(frozen=True)
class VideoRef:
    """Where one camera of one episode lives: a file and the episode's first timestamp in it."""

    path: Path
    from_timestamp: float = 0.0
    to_timestamp: float | None = None


@dataclass(frozen=True)
class EpisodeRef:
    """An episode as the metadata describes it (no data read yet)."""

    index: int
    length: int
    tasks: tuple[str, ...]
    data_path: Path
    videos: dict[str, VideoRef] = field(default_factory=dict)  # video_key -> VideoRef
    raw_episode_id: int | None = None  # 2026: the raw HDF5 demo's id, which names its annotation file
    annotation_path: str | None = None  # 2026: the annotation file, relative to the dataset root


@dataclass(frozen=True)
class SourceTask:
    """A task as the dataset lists it: its own index, its name (snake_case in BEHAVIOR's releases) and,
    when `meta/tasks.jsonl` has one, the natural-language instruction."""

    index: int
    name: str
    instruction: str | None = None


@dataclass
class EpisodeData:
    """One episode's parquet columns, ordered by frame_index (0..L-1)."""

    index: int
    state: np.ndarray  # (L, D) as stored (float32 in LeRobot datasets)
    action: np.ndarray  # (L, A)
    timestamp: np.ndarray  # (L,) float64
    frame_index: np.ndarray  # (L,) int64
    task_index: np.ndarray | None  # (L,) int64, when the column exists

    @property
    def length(self) -> int:
        return len(self.frame_index)


def _load_json(path: Path, what: str) -> object:
    if not path.is_file():
        raise SourceError(f"{path}: missing ({what})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: not valid JSON ({exc})") from None


def _load_jsonl(path: Path, what: str) -> list[dict]:
    if not path.is_file():
        raise SourceError(f"{path}: missing ({what})")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path}:{n}: not valid JSON ({exc})") from None
    return rows


class SourceDataset:
    """A LeRobot dataset on disk: info, episodes, tasks, and per-episode reads."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise SourceError(f"{self.root}: dataset directory does not exist")
        info = _load_json(
            self.root / INFO_PATH, "LeRobot dataset metadata; expected a LeRobot v2.1 or v3.0 dataset root"
        )
        if not isinstance(info, dict):
            raise SourceError(f"{self.root / INFO_PATH}: expected a JSON object")
        self.info: dict = info
        version = info.get("codebase_version")
        if version is None:
            raise SourceError(
                f"{self.root / INFO_PATH}: missing 'codebase_version' (expected one of {list(SUPPORTED_VERSIONS)})"
            )
        if version not in SUPPORTED_VERSIONS:
            raise SourceError(
                f"{self.root / INFO_PATH}: unknown codebase_version {version!r}; this tool reads {list(SUPPORTED_VERSIONS)}"
            )
        self.version: str = version
        for key in ("fps", "features", "data_path"):
            if key not in info:
                raise SourceError(f"{self.root / INFO_PATH}: missing {key!r}")
        self.fps: float = info["fps"]
        if not isinstance(self.fps, (int, float)) or self.fps <= 0:
            raise SourceError(f"{self.root / INFO_PATH}: 'fps' must be a positive number, got {self.fps!r}")
        self.features: dict = info["features"]
        for key in (STATE_KEY, ACTION_KEY):
            if key not in self.features:
                raise SourceError(f"{self.root / INFO_PATH}: features has no {key!r}")
        self.data_path_template: str = info["data_path"]
        self.video_path_template: str | None = info.get("video_path")
        self.chunks_size: int = int(info.get("chunks_size", 1000))
        self._durations: dict[Path, float] | None = None
        self.task_records: dict[int, SourceTask] = {}  # filled from meta/tasks.* by the loaders
        self.video_keys = [
            k for k, f in self.features.items() if isinstance(f, dict) and f.get("dtype") == "video"
        ]
        if self.version == "v2.1":
            self.episodes, self.tasks = self._load_v21()
        else:
            self.episodes, self.tasks = self._load_v30()
        for index, text in self.tasks.items():  # tasks.parquet alone: its strings are the names
            self.task_records.setdefault(index, SourceTask(index, text))
        # an episode's metadata names its task by the dataset's task string or by the task's name
        self._task_by_string = {self.tasks[i]: t for i, t in self.task_records.items() if i in self.tasks}
        self._task_by_string.update({t.name: t for t in self.task_records.values()})

    # ---------------------------------------------------------------- metadata
    def feature_shape(self, key: str) -> tuple[int, ...]:
        shape = self.features.get(key, {}).get("shape")
        return tuple(int(s) for s in shape) if shape is not None else ()

    def _v21_path(self, template: str, episode_index: int, video_key: str | None = None) -> Path:
        fields = {"episode_chunk": episode_index // self.chunks_size, "episode_index": episode_index}
        if video_key is not None:
            fields["video_key"] = video_key
        try:
            return self.root / template.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise SourceError(
                f"{self.root / INFO_PATH}: cannot fill path template {template!r} ({exc!r})"
            ) from None

    def _load_v21(self) -> tuple[dict[int, EpisodeRef], dict[int, str]]:
        tasks = self._tasks_jsonl(self.root / "meta/tasks.jsonl", required=True)
        episodes: dict[int, EpisodeRef] = {}
        path = self.root / "meta/episodes.jsonl"
        for row in _load_jsonl(path, "v2.1 episode list"):
            try:
                index, length = int(row["episode_index"]), int(row["length"])
            except KeyError as exc:
                raise SourceError(f"{path}: an episode row lacks {exc.args[0]!r}: {row}") from None
            videos = {}
            if self.video_path_template:
                for key in self.video_keys:
                    videos[key] = VideoRef(self._v21_path(self.video_path_template, index, key), 0.0, None)
            episodes[index] = EpisodeRef(
                index=index,
                length=length,
                tasks=tuple(row.get("tasks") or ()),
                data_path=self._v21_path(self.data_path_template, index),
                videos=videos,
            )
        return episodes, tasks

    def _load_v30(self) -> tuple[dict[int, EpisodeRef], dict[int, str]]:
        tasks = self._tasks_parquet(self.root / "meta/tasks.parquet")
        self._tasks_jsonl(self.root / "meta/tasks.jsonl", required=False)
        meta_dir = self.root / "meta/episodes"
        files = sorted(meta_dir.glob("**/*.parquet"))
        if not files:
            raise SourceError(f"{meta_dir}: no episode metadata parquet files (v3.0 layout)")
        episodes: dict[int, EpisodeRef] = {}
        for path in files:
            for row in self._v30_episode_rows(path):
                ref = self._v30_episode(row)
                episodes[ref.index] = ref
        return episodes, tasks

    def _tasks_parquet(self, tasks_path: Path) -> dict[int, str]:
        """`meta/tasks.parquet`: the dataset's task strings by index (v3.0)."""
        if not tasks_path.is_file():
            raise SourceError(f"{tasks_path}: missing (v3.0 task list)")
        table = read_parquet(tasks_path)
        names = table.column_names
        # LeRobot writes the task string as the pandas index (column "task" or "__index_level_0__").
        task_col = (
            "task" if "task" in names else next((n for n in names if n.startswith("__index_level")), None)
        )
        if task_col is None or "task_index" not in names:
            raise SourceError(
                f"{tasks_path}: expected a task string index and a 'task_index' column, got {names}"
            )
        return {
            int(i): str(t)
            for t, i in zip(
                table.column(task_col).to_pylist(), table.column("task_index").to_pylist(), strict=True
            )
        }

    def _v30_episode_rows(self, path: Path) -> list[dict]:
        """The rows of one `meta/episodes` parquet file, checked to hold every column an episode needs."""
        schema = pq.read_schema(path)
        columns = [c for c in schema.names if not c.startswith("stats/")]
        required = ["episode_index", "length", "data/chunk_index", "data/file_index"]
        for key in self.video_keys:
            required += [
                f"videos/{key}/chunk_index",
                f"videos/{key}/file_index",
                f"videos/{key}/from_timestamp",
            ]
        missing = [c for c in required if c not in columns]
        if missing:
            raise SourceError(f"{path}: episode metadata lacks columns {missing}")
        return read_parquet(path, columns).to_pylist()

    def _v30_episode(self, row: dict) -> EpisodeRef:
        """An episode from its `meta/episodes` row: its data file and where each camera's video lies."""
        videos = {}
        for key in self.video_keys:
            video_path = self.root / self.video_path_template.format(
                video_key=key,
                chunk_index=int(row[f"videos/{key}/chunk_index"]),
                file_index=int(row[f"videos/{key}/file_index"]),
            )
            to_ts = row.get(f"videos/{key}/to_timestamp")
            videos[key] = VideoRef(
                video_path,
                float(row[f"videos/{key}/from_timestamp"]),
                None if to_ts is None else float(to_ts),
            )
        data_path = self.root / self.data_path_template.format(
            chunk_index=int(row["data/chunk_index"]), file_index=int(row["data/file_index"])
        )
        raw_id = row.get("raw_episode_id")
        return EpisodeRef(
            index=int(row["episode_index"]),
            length=int(row["length"]),
            tasks=tuple(row.get("tasks") or ()),
            data_path=data_path,
            videos=videos,
            raw_episode_id=None if raw_id is None else int(raw_id),
            annotation_path=row.get("annotation_path") or None,
        )

    def _tasks_jsonl(self, path: Path, required: bool) -> dict[int, str]:
        """`meta/tasks.jsonl` into `self.task_records` (name and instruction per task); returns the
        dataset's task strings by index. Rows are `{task_index, task}` (2025: `task` is the name) or
        `{task_index, task_name, task}` (2026: `task` is the instruction)."""
        if not required and not path.is_file():
            return {}
        strings: dict[int, str] = {}
        for n, row in enumerate(_load_jsonl(path, "task list"), 1):
            try:
                index, text = int(row["task_index"]), str(row["task"])
            except (KeyError, TypeError, ValueError):
                raise SourceError(
                    f"{path}:{n}: expected {{task_index: int, task: str}}, got {row!r:.200}"
                ) from None
            name = row.get("task_name")
            if isinstance(name, str) and name:
                self.task_records[index] = SourceTask(index, name, text)
            else:
                self.task_records[index] = SourceTask(index, text)
            strings[index] = text
        return strings

    def fingerprint(self) -> str:
        """sha256 over the meta files (info, episodes, tasks): identifies the source a shard set came from."""
        digest = hashlib.sha256()
        meta = self.root / "meta"
        for path in sorted(p for p in meta.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(meta)).encode() + b"\0")
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

    def is_downloaded(self, index: int) -> bool:
        """Whether the episode's data file is on disk (a partial download lists episodes it lacks)."""
        return self.episode(index).data_path.is_file()

    def task_of(self, ref: EpisodeRef) -> SourceTask | None:
        """The task an episode's metadata names (its first task string), or None when it names none
        the task list knows."""
        return self._task_by_string.get(ref.tasks[0]) if ref.tasks else None

    def episode(self, index: int) -> EpisodeRef:
        try:
            return self.episodes[index]
        except KeyError:
            raise SourceError(
                f"episode {index} is not in {self.root} (has {len(self.episodes)} episodes)"
            ) from None

    def video_seconds_per_file(self) -> dict[Path, float]:
        """v3.0: each video file's duration as the metadata says (largest to_timestamp); for size estimates."""
        if self._durations is not None:
            return self._durations
        durations: dict[Path, float] = {}
        for ep in self.episodes.values():
            for ref in ep.videos.values():
                end = (
                    ref.to_timestamp
                    if ref.to_timestamp is not None
                    else ref.from_timestamp + ep.length / self.fps
                )
                durations[ref.path] = max(durations.get(ref.path, 0.0), end)
        self._durations = durations
        return durations

    def source_video_bytes(self, episode: EpisodeRef, video_keys: list[str]) -> int:
        """Bytes of the source video that hold this episode's frames for the given cameras (v3.0: estimated
        as the file size times the episode's share of the file's duration)."""
        total = 0.0
        durations = self.video_seconds_per_file() if self.version != "v2.1" else {}
        for key in video_keys:
            ref = episode.videos.get(key)
            if ref is None or not ref.path.is_file():
                continue
            size = ref.path.stat().st_size
            if self.version == "v2.1":
                total += size
            else:
                duration = durations.get(ref.path) or 0.0
                span = (
                    ref.to_timestamp or ref.from_timestamp + episode.length / self.fps
                ) - ref.from_timestamp
                total += size * (span / duration) if duration > 0 else 0.0
        return int(total)

    # ---------------------------------------------------------------- data
    def read_episode(self, index: int) -> EpisodeData:
        """The episode's state/action/timestamp/frame_index/task_index columns, ordered by frame_index."""
        ep = self.episode(index)
        path = ep.data_path
        if not path.is_file():
            raise EpisodeDataError(f"{path}: missing data file for episode {index}", index)
        schema = pq.read_schema(path)
        wanted = [STATE_KEY, ACTION_KEY, "timestamp", "frame_index", "episode_index", "task_index"]
        missing = [c for c in wanted[:5] if c not in schema.names]
        if missing:
            raise SourceError(f"{path}: missing columns {missing} (episode {index})")
        columns = [c for c in wanted if c in schema.names]
        table = read_parquet(path, columns, None if self.version == "v2.1" else index)
        if self.version == "v2.1" and table.num_rows:
            other = pc.unique(table.column("episode_index")).to_pylist()
            if other != [index]:
                raise EpisodeDataError(
                    f"{path}: episode_index column holds {other}, expected only {index}", index
                )
        order = pc.sort_indices(table, sort_keys=[("frame_index", "ascending")])
        table = table.take(order)
        length = table.num_rows
        frame_index = to_numpy(table.column("frame_index")).astype(np.int64)
        if length != ep.length:
            raise EpisodeDataError(
                f"{path}: episode {index} has {length} rows in the data file, the episode metadata says length {ep.length}",
                index,
            )
        if length == 0:
            raise EpisodeDataError(f"{path}: episode {index} has no rows", index)
        if not np.array_equal(frame_index, np.arange(length)):
            bad = int(np.flatnonzero(frame_index != np.arange(length))[0])
            raise EpisodeDataError(
                f"{path}: episode {index} frame_index is not 0..{length - 1}: position {bad} holds {frame_index[bad]}",
                index,
            )
        state = _list_column(table, STATE_KEY, path, index)
        action = _list_column(table, ACTION_KEY, path, index)
        timestamp = to_numpy(table.column("timestamp")).astype(np.float64)
        task_index = (
            to_numpy(table.column("task_index")).astype(np.int64)
            if "task_index" in table.column_names
            else None
        )
        return EpisodeData(index, state, action, timestamp, frame_index, task_index)


def read_parquet(path: Path, columns: list[str] | None = None, episode_index: int | None = None) -> pa.Table:
    """`columns` of a parquet file (all if None). With `episode_index`: only that episode's rows,
    reading only the row groups whose statistics may hold it (what `pq.read_table(filters=...)`
    does, without importing `pyarrow.dataset` and with it pandas)."""
    with pq.ParquetFile(path) as parquet:
        if episode_index is None:
            return parquet.read(columns=columns)
        meta = parquet.metadata
        groups = [
            i
            for i in range(meta.num_row_groups)
            if _may_hold(meta.row_group(i), "episode_index", episode_index)
        ]
        table = parquet.read_row_groups(groups, columns=columns)
    rows = np.flatnonzero(to_numpy(table.column("episode_index")) == episode_index)
    if len(rows) == table.num_rows:
        return table
    # indices from numpy's buffer: `pc.equal(column, index)` or `pa.array(rows)` would import pandas
    return table.take(
        pa.Array.from_buffers(pa.int64(), len(rows), [None, pa.py_buffer(rows.astype(np.int64))])
    )


def to_numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric column as numpy. Integers and floats without nulls are viewed through their data
    buffer: pyarrow's own `to_numpy` starts its pandas conversion layer, which imports pandas
    (~0.25 s CPU per process) even for a plain int64 column. Anything else goes through pyarrow."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    kind = values.type
    if values.null_count or not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        return values.to_numpy(zero_copy_only=False)
    code = "f" if pa.types.is_floating(kind) else "i" if pa.types.is_signed_integer(kind) else "u"
    dtype = np.dtype(f"{code}{kind.bit_width // 8}")
    if len(values) == 0:
        return np.empty(0, dtype)
    return np.frombuffer(values.buffers()[1], dtype, len(values), values.offset * dtype.itemsize)


def _may_hold(row_group: pq.RowGroupMetaData, column: str, value: int) -> bool:
    """False only when the row group's min/max statistics of `column` exclude `value`."""
    for i in range(row_group.num_columns):
        chunk = row_group.column(i)
        if chunk.path_in_schema == column:
            stats = chunk.statistics
            if stats is None or not stats.has_min_max:
                return True
            return stats.min <= value <= stats.max
    return True


def _list_column(table: pa.Table, name: str, path: Path, episode_index: int) -> np.ndarray:
    """A list<float> (or fixed_size_list) column as a (rows, dim) array; every row must have the same length."""
    column = table.column(name).combine_chunks()
    rows = len(column)
    if isinstance(column.type, pa.FixedSizeListType):
        dim = column.type.list_size
    elif isinstance(column.type, (pa.ListType, pa.LargeListType)):
        lengths = to_numpy(pc.list_value_length(column))
        if rows and (lengths.min() != lengths.max()):
            frame = int(np.flatnonzero(lengths != lengths[0])[0])
            raise EpisodeDataError(
                f"{path}: episode {episode_index} frame {frame} field {name!r} has {lengths[frame]} values, "
                f"frame 0 has {lengths[0]}",
                episode_index,
            )
        dim = int(lengths[0]) if rows else 0
    else:
        raise SourceError(f"{path}: column {name!r} has type {column.type}, expected a list of floats")
    if column.null_count:
        raise EpisodeDataError(f"{path}: episode {episode_index} field {name!r} has null rows", episode_index)
    values = to_numpy(column.flatten())
    return np.asarray(values).reshape(rows, dim)


def first_non_finite(values: np.ndarray) -> tuple[int, int] | None:
    """(row, column) of the first NaN/inf in a 2-d array, or None."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    row, col = np.argwhere(bad)[0]
    return int(row), int(col)
