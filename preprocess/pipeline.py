"""The whole run: plan -> episodes over a process pool -> interleaved shards -> stats -> manifest.

1. Plan: open the source, choose the state dims, the cameras and their stored sizes, the
   episodes (`--episodes`), the held-out split (`--val-episodes`/`--val-fraction`, chosen over
   the whole selection with `--seed`, so every partition agrees), then this machine's slice
   (`--partition K/N`: the sorted selection's episodes K, K+N, K+2N, ...).
2. Episodes: each one becomes a per-episode work tar + npz in `<output>/.work/` (see
   `preprocess.episode`), over a process pool forked from a clean fork server
   (`preprocess.workers`: PyAV is not fork-safe); an episode whose work tar exists is skipped by
   `--resume`. A worker's error reaches the parent as an exception; the pool is shut down (no hung
   pool), nothing is left looking complete.
3. Interleave, per split: a seeded, bounded window of open episode tars (default 64 episodes);
   each next sample is drawn from a window episode with probability proportional to its
   remaining samples; a finished episode is replaced by the next one of a seeded permutation.
   The order depends on the sample counts only (`interleave_order`), so the shard boundaries are
   known up front (`shards.writer.plan_shards`) and the shards are written independently, one
   thread per `--workers` (`write_shards`): samples are copied from the work tars as tar bytes,
   cut by the sizes each episode's record lists (`preprocess.episode.WorkTar`: no member is
   parsed), each shard under a temporary name, hashed, synced and renamed. Deterministic given
   the seed and the work files, whatever the thread count, so a resumed run writes byte-identical
   shards.
4. Stats (train split, full frame rate, columns ordered by (episode, frame)): sidecars
   `stats/<key>.npy` + exact stats (`shards.stats`).
5. `manifest.json`, written last and atomically; then the work dir is removed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from preprocess.defaults import DEFAULT_INTERLEAVE_WINDOW, DEFAULT_SHARD_MAX_BYTES, DEFAULT_SHARD_MAX_SAMPLES
from preprocess.episode import (
    CameraPlan,
    EpisodeOptions,
    EpisodeResult,
    WorkTar,
    process_episode,
    work_paths,
)
from preprocess.images import DEFAULT_JPEG_QUALITY, RESIZE_METHOD, ImageSize
from preprocess.source import EpisodeDataError, SourceDataset, SourceError
from preprocess.workers import EpisodePool, WorkerError, pool_size
from schemas.manifest import MANIFEST_NAME, dump_manifest, validate_manifest
from schemas.presets import DEFAULT_PRESET, PRESET_NAMES, StateSelection, resolve_state_selection
from schemas.r1pro import (
    ACTION_DIM,
    ACTION_KEY,
    CAMERAS,
    LAYOUTS,
    STATE_KEY,
    LayoutError,
    StateLayout,
    action_names,
    detect_layout,
)
from schemas.sample import SCHEMA_VERSION, TEMPORAL_FORMULA, image_member
from shards.lock import LOCK_NAME, FolderLock, FolderLockedError
from shards.stats import compute_stats, load_stats_values, write_stats_values
from shards.writer import RawSample, ShardInfo, atomic_write_text, plan_shards, tool_version, write_tar

log = logging.getLogger(__name__)

TOOL = "b1k-preprocess"
WORK_DIR = ".work"
STAGE_DIR = "final"  # in the work dir: the final stage's shards and sidecars until they are swapped in
OPTIONS_FILE = "options.json"


class PreprocessError(RuntimeError):
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
    val_episodes: str | None = None
    val_fraction: float = 0.0
    seed: int = 0
    workers: int | None = None
    decoder_threads: int = 0  # per video decoder; 0 = auto (see resolve_decoder_threads)
    shard_max_bytes: int = DEFAULT_SHARD_MAX_BYTES
    shard_max_samples: int = DEFAULT_SHARD_MAX_SAMPLES
    partition: str | None = None
    overwrite: bool = False
    resume: bool = False
    skip_bad_episodes: bool = False
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
    source: SourceDataset
    selection: StateSelection
    image_size: ImageSize
    cameras: tuple[CameraPlan, ...]
    native_sizes: dict[str, tuple[int, int]]
    selected: list[int]  # every selected episode (all partitions)
    episodes: list[int]  # this partition's episodes, sorted
    val: set[int]  # held-out episodes (of the whole selection)
    partition: tuple[int, int] | None
    options: EpisodeOptions
    warnings: list[str] = field(default_factory=list)

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


def _probe_size(path: Path) -> tuple[int, int] | None:
    try:
        with av.open(str(path)) as container:
            ctx = container.streams.video[0].codec_context
            return int(ctx.height), int(ctx.width)
    except (av.FFmpegError, IndexError, OSError):
        return None


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


def make_plan(config: PreprocessConfig) -> Plan:
    source = SourceDataset(config.dataset_path)
    warnings: list[str] = []
    layout = detect_state_layout(source)
    try:
        selection = resolve_state_selection(config.state_preset, config.state_indices, layout)
    except ValueError as exc:
        raise PreprocessError(
            f"{exc} (state layout {layout.describe()}, detected in {source.root})"
        ) from None
    if selection.not_standard_track:
        message = (
            f"state dims {list(selection.not_standard_track)} "
            f"({', '.join(n for i, n in zip(selection.indices, selection.names, strict=True) if i in selection.not_standard_track)}) "
            "are not allowed in the BEHAVIOR standard track"
        )
        warnings.append(message)
        log.warning("warning: %s", message)
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
        image_size = ImageSize.parse(config.image_size)
    except ValueError as exc:
        raise PreprocessError(str(exc)) from None

    all_episodes = sorted(source.episodes)
    if not all_episodes:
        raise PreprocessError(f"{source.root}: the dataset lists no episodes")
    if config.episodes:
        selected = parse_index_list(config.episodes, "--episodes")
        unknown = sorted(set(selected) - set(all_episodes))
        if unknown:
            raise PreprocessError(
                f"--episodes {unknown[:20]}{'...' if len(unknown) > 20 else ''} are not in {source.root} "
                f"(it has episodes {all_episodes[0]}..{all_episodes[-1]}, {len(all_episodes)} in all)"
            )
    else:
        selected = all_episodes
    val = choose_val(selected, config.val_episodes, config.val_fraction, config.seed)
    partition = parse_partition(config.partition)
    episodes = selected[partition[0] :: partition[1]] if partition else list(selected)
    if not episodes:
        raise PreprocessError(
            f"--partition {config.partition}: no episodes fall in this partition ({len(selected)} selected)"
        )

    cameras = []
    native_sizes = {}
    first = source.episode(episodes[0])
    for camera in CAMERAS:
        if camera.video_key not in source.video_keys:
            raise PreprocessError(
                f"{source.root / 'meta/info.json'}: no video feature {camera.video_key!r} (camera {camera.name}); "
                f"video features are {source.video_keys}"
            )
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
        cameras.append(CameraPlan(camera.name, camera.video_key, height, width))
        native_sizes[camera.name] = native

    options = EpisodeOptions(
        dataset_path=str(source.root),
        state_dim=layout.dim,
        state_indices=selection.indices,
        horizon=config.horizon,
        temporal_alpha=float(config.temporal_alpha),
        frame_stride=config.frame_stride,
        jpeg_quality=config.jpeg_quality,
        cameras=tuple(cameras),
    )
    return Plan(
        source,
        selection,
        image_size,
        tuple(cameras),
        native_sizes,
        selected,
        episodes,
        val,
        partition,
        options,
        warnings,
    )


# ------------------------------------------------------------------ output directory
_OURS = (MANIFEST_NAME, WORK_DIR, "stats", LOCK_NAME)


def _is_ours(path: Path) -> bool:
    return path.name in _OURS or path.name.endswith((".tar", ".tmp"))


def prepare_output(config: PreprocessConfig) -> Path | None:
    """Check/prepare the output dir; returns the work dir, or None when `--resume` finds a finished set."""
    out = Path(config.output_dir)
    if config.overwrite and config.resume:
        raise PreprocessError("--overwrite and --resume are exclusive; give one")
    work = out / WORK_DIR
    fingerprint = config.fingerprint()
    if out.exists() and not out.is_dir():
        raise PreprocessError(f"--output-dir {out}: exists and is not a directory")
    entries = sorted(e for e in out.iterdir() if e.name != LOCK_NAME) if out.is_dir() else []
    if entries:
        if config.resume:
            recorded = None
            if (work / OPTIONS_FILE).is_file():
                recorded = json.loads((work / OPTIONS_FILE).read_text())
            elif (out / MANIFEST_NAME).is_file():
                recorded = json.loads((out / MANIFEST_NAME).read_text()).get("options")
            if recorded is None:
                raise PreprocessError(
                    f"--resume: {out} holds no run of this tool to resume (no {WORK_DIR}/{OPTIONS_FILE} or {MANIFEST_NAME})"
                )
            differ = [
                f"{key}: was {recorded.get(key)!r}, now {value!r}"
                for key, value in fingerprint.items()
                if recorded.get(key) != value
            ]
            if differ:
                raise PreprocessError(
                    f"--resume: the options differ from the interrupted run in {out}: " + "; ".join(differ)
                )
            if not work.is_dir():
                log.info("%s: already complete (%s present); nothing to resume", out, MANIFEST_NAME)
                return None
            log.info("resuming the run in %s", work)
            return work
        if config.overwrite:
            foreign = [e.name for e in entries if not _is_ours(e)]
            if foreign:
                raise PreprocessError(
                    f"--overwrite: {out} holds files this tool did not write ({foreign[:10]}); "
                    "remove them or choose another --output-dir"
                )
            # The previous set stays until the new one is complete (`replace_set`); an earlier run's
            # unfinished work is not a result and goes now.
            shutil.rmtree(work, ignore_errors=True)
            log.info(
                "--overwrite: the new set is built beside the one in %s and replaces it once complete", out
            )
        else:
            raise PreprocessError(
                f"--output-dir {out} is not empty ({len(entries)} entries, e.g. {entries[0].name!r}); "
                "pass --overwrite to replace it or --resume to continue an interrupted run"
            )
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work / OPTIONS_FILE, json.dumps(fingerprint, indent=2, sort_keys=True))
    return work


# ------------------------------------------------------------------ episodes
def _load_done(work: Path, episode_index: int) -> EpisodeResult | dict | None:
    paths = work_paths(work, episode_index)
    if paths["skipped"].is_file():
        return json.loads(paths["skipped"].read_text())
    if paths["tar"].is_file() and paths["json"].is_file() and paths["npz"].is_file():
        record = json.loads(paths["json"].read_text())
        if "sample_bytes" in record:  # (a work dir of an older version lacks it: redo the episode)
            return EpisodeResult(**record)
    return None


def _clean_partial(work: Path) -> None:
    for path in work.iterdir():
        if path.name.endswith((".tmp", ".part")):
            path.unlink(missing_ok=True)


class _Progress:
    """Episodes done/total, frames/s and ETA: a tqdm bar over frames on a terminal, else a log line
    every `log_every` seconds."""

    def __init__(
        self,
        total_frames: int,
        done_frames: int,
        total_episodes: int,
        done_episodes: int,
        enabled: bool,
        log_every: float = 30.0,
    ):
        self.total_frames = total_frames
        self.frames = done_frames
        self.start_frames = done_frames
        self.total_episodes = total_episodes
        self.done_episodes = done_episodes
        self.started = time.perf_counter()
        self.last_log = self.started
        self.log_every = log_every
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_frames,
                initial=done_frames,
                unit="frame",
                unit_scale=True,
                dynamic_ncols=True,
                file=sys.stderr,
            )
            self._describe()

    def _describe(self) -> None:
        if self.bar is not None:
            self.bar.set_description(f"episodes {self.done_episodes}/{self.total_episodes}")

    def frames_done(self, count: int) -> None:
        count = max(0, min(count, self.total_frames - self.frames))
        self.frames += count
        if self.bar is not None:
            self.bar.update(count)
        elif time.perf_counter() - self.last_log >= self.log_every:
            self._log()

    def episode_done(self, episode_frames_left: int = 0) -> None:
        self.done_episodes += 1
        self._describe()
        self.frames_done(episode_frames_left)

    def _log(self) -> None:
        now = time.perf_counter()
        self.last_log = now
        rate = (self.frames - self.start_frames) / max(now - self.started, 1e-9)
        left = self.total_frames - self.frames
        eta = f"{left / rate / 60:.1f} min" if rate > 0 else "?"
        log.info(
            "episodes %d/%d, frames %d/%d, %.1f frames/s, ETA %s",
            self.done_episodes, self.total_episodes, self.frames, self.total_frames, rate, eta,
        )  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            self._log()


def resolve_decoder_threads(requested: int, workers: int) -> int:
    """Threads per video decoder: `requested` if > 0; else FFmpeg's own choice (0: one per core)
    for a single worker, and cores // workers for a pool (the cores are shared by the workers:
    more decoder threads than that only contend)."""
    if requested > 0:
        return requested
    if workers == 1:
        return 0
    return max(1, (os.cpu_count() or 1) // workers)


def run_episodes(
    plan: Plan, config: PreprocessConfig, work: Path, pool: EpisodePool | None = None
) -> tuple[dict[int, EpisodeResult], list[dict], int]:
    """Process every episode of the plan not already done; returns results, skipped episodes and the
    number of frames processed by this call. `pool`: workers started ahead (`run`), used when more
    than one episode is to do; shut down here either way."""
    _clean_partial(work)
    results: dict[int, EpisodeResult] = {}
    skipped: list[dict] = []
    todo = []
    for index in plan.episodes:
        done = _load_done(work, index)
        if isinstance(done, EpisodeResult):
            results[index] = done
        elif isinstance(done, dict):
            skipped.append(done)
        else:
            todo.append(index)
    if results or skipped:
        log.info("resume: %d episodes already done, %d to go", len(results) + len(skipped), len(todo))
    lengths = {i: plan.source.episode(i).length for i in plan.episodes}
    progress = _Progress(
        total_frames=sum(lengths.values()),
        done_frames=sum(lengths[i] for i in results) + sum(lengths[s["episode_index"]] for s in skipped),
        total_episodes=len(plan.episodes),
        done_episodes=len(results) + len(skipped),
        enabled=config.progress,
    )

    def on_error(index: int, exc: BaseException) -> None:
        if isinstance(exc, EpisodeDataError) and config.skip_bad_episodes:
            record = {"episode_index": index, "reason": str(exc)}
            atomic_write_text(work_paths(work, index)["skipped"], json.dumps(record))
            for kind in ("tar", "npz", "json"):
                work_paths(work, index)[kind].unlink(missing_ok=True)
            skipped.append(record)
            log.warning("skipping episode %d (--skip-bad-episodes): %s", index, exc)
            # serial: count the frames the episode did not reach; pool: workers count what they decode
            progress.episode_done(0 if pooled else lengths[index] - counted.pop(index, 0))
            return
        if isinstance(exc, (EpisodeDataError, SourceError, WorkerError)):
            raise PreprocessError(str(exc)) from None
        if isinstance(exc, BrokenProcessPool):
            raise PreprocessError(
                f"a worker process died while processing episode {index} (killed, or out of memory?); "
                "episodes already done are kept: rerun with --resume (fewer --workers if memory is short)"
            ) from None
        raise PreprocessError(f"episode {index}: {type(exc).__name__}: {exc}") from exc

    def on_done(result: EpisodeResult) -> None:
        results[result.episode_index] = result
        progress.episode_done(0 if pooled else result.length - counted.pop(result.episode_index, 0))
        ahead = (
            ""
            if result.decode_ahead_from is None
            else f", decoded ahead from frame {result.decode_ahead_from}"
        )
        log.debug(
            "episode %d: %d samples, %d bytes, %.1f s%s",
            result.episode_index, result.samples, result.tar_bytes, result.seconds, ahead,
        )  # fmt: skip

    # Longest episodes first: the pool's tail is short (results do not depend on the order).
    todo.sort(key=lambda i: (-lengths[i], i))
    counted: dict[int, int] = {}  # frames of an unfinished episode already shown (serial mode)
    workers = max(1, min(pool_size(config.workers), len(todo)))
    pooled = workers > 1
    options = dataclasses.replace(
        plan.options, decoder_threads=resolve_decoder_threads(config.decoder_threads, workers)
    )
    try:
        if workers == 1:
            if pool is not None:
                pool.shutdown(wait=False)  # idle workers: let them go without waiting
            for index in todo:

                def on_frames(n: int, index: int = index) -> None:
                    counted[index] = counted.get(index, 0) + n
                    progress.frames_done(n)

                try:
                    result = process_episode(index, options, work, on_frames)
                except Exception as exc:
                    on_error(index, exc)
                else:
                    on_done(result)
        else:
            pool = pool or EpisodePool(workers)
            _run_pool(todo, options, work, pool, workers, on_done, on_error, progress)
    finally:
        progress.close()
    frames_this_run = sum(lengths[i] for i in todo if i in results)
    return results, sorted(skipped, key=lambda s: s["episode_index"]), frames_this_run


def _run_pool(
    todo, options, work, pool: EpisodePool, workers: int, on_done, on_error, progress: _Progress
) -> None:
    pending: dict[Future, int] = {}
    queue = list(reversed(todo))
    shown = pool.frames_decoded()
    try:
        # Keep at most 2 episodes per worker in flight so a failure stops the run promptly.
        while queue or pending:
            while queue and len(pending) < 2 * workers:
                index = queue.pop()
                try:
                    pending[pool.submit(index, options, str(work))] = index
                except BrokenProcessPool as exc:  # a worker died before this episode was queued
                    on_error(index, exc)
            pool.lend_spare_cores(len(queue) + len(pending))
            finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            decoded = pool.frames_decoded()
            progress.frames_done(decoded - shown)
            shown = decoded
            for future in finished:
                index = pending.pop(future)
                exc = future.exception()
                if exc is None:
                    on_done(future.result())
                else:
                    on_error(index, exc)
    except BaseException:
        for future in pending:
            future.cancel()
        pool.shutdown(cancel=True)
        raise
    pool.shutdown(wait=False)  # the workers exit while the final stage runs (`run` joins them)


# ------------------------------------------------------------------ interleave
def interleave_order(counts: list[int], seed: int, window: int = DEFAULT_INTERLEAVE_WINDOW) -> np.ndarray:
    """The mixed order of the samples of episodes with these sample counts: an (n, 2) array of
    (position in `counts`, sample of that episode).

    A seeded permutation orders the episodes; up to `window` of them are open at a time; each next
    sample comes from an open episode drawn with probability proportional to its remaining samples.
    Within an episode samples keep their frame order. Only the counts matter, so the order is known
    before a byte is copied and the shards can be written independently.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(counts)).tolist()
    out = np.empty((sum(counts), 2), dtype=np.int64)
    opened: list[int] = []  # positions in `counts` of the open episodes
    remaining: list[int] = []
    written = 0
    next_up = 0
    while next_up < len(order) or opened:
        while next_up < len(order) and len(opened) < window:
            position = order[next_up]
            next_up += 1
            if counts[position] > 0:
                opened.append(position)
                remaining.append(counts[position])
        if not opened:
            break
        cumulative = np.cumsum(remaining)
        slot = int(np.searchsorted(cumulative, rng.integers(cumulative[-1]), side="right"))
        position = opened[slot]
        out[written] = (position, counts[position] - remaining[slot])
        written += 1
        remaining[slot] -= 1
        if remaining[slot] == 0:
            del opened[slot], remaining[slot]
    return out


def write_shards(
    tars: list[WorkTar], order: np.ndarray, out: Path, prefix: str, config: PreprocessConfig
) -> list[ShardInfo]:
    """Copy the samples of the episodes' work tars into `<prefix>-NNNNNN.tar` shards under `out`, in
    `order` ((tar, sample) rows, `interleave_order`), cut as `ShardWriter` cuts them. The shards are
    written independently (`plan_shards`), by one thread per `--workers`: reading, hashing, writing
    and syncing a shard release the GIL, so the stage no longer runs on one core while the others
    idle (300 MB of shards: 0.47 s with one writer, 0.25 s with two threads here). The episodes
    scale with the workers; a one-core final stage would not."""
    if not tars:
        return []
    first = np.cumsum([0] + [len(tar) for tar in tars])[:-1]  # each tar's first row in the flat arrays
    flat = first[order[:, 0]] + order[:, 1]
    sizes = np.concatenate([tar.sizes for tar in tars])[flat]
    payloads = np.concatenate([tar.payloads for tar in tars])[flat]
    spans = plan_shards(sizes.tolist(), payloads.tolist(), config.shard_max_samples, config.shard_max_bytes)

    def write(index: int) -> ShardInfo:
        return write_tar(out / f"{prefix}-{index:06d}.tar", _read_samples(tars, order[spans[index]]))

    threads = min(pool_size(config.workers), len(spans))
    if threads <= 1:
        return [write(index) for index in range(len(spans))]
    with ThreadPoolExecutor(threads, thread_name_prefix="shard-writer") as executor:
        futures = [executor.submit(write, index) for index in range(len(spans))]
        try:
            return [future.result() for future in futures]
        except BaseException:  # a failed shard (its temporary file removed) stops the ones not started
            executor.shutdown(cancel_futures=True)
            raise


def _unreadable(episode: int, exc: Exception) -> PreprocessError:
    return PreprocessError(f"work tar of episode {episode} is unreadable: {exc}")


def _read_samples(tars: list[WorkTar], rows: np.ndarray) -> Iterator[RawSample]:
    files: dict[int, int] = {}  # open descriptors of this shard's work tars
    try:
        for position, k in rows.tolist():
            tar = tars[position]
            try:
                if position not in files:
                    files[position] = os.open(tar.path, os.O_RDONLY)
                raw = tar.read(files[position], k)
            except (OSError, ValueError) as exc:
                raise _unreadable(tar.episode_index, exc) from None
            yield raw
    finally:
        for fd in files.values():
            os.close(fd)


# ------------------------------------------------------------------ the run
def _split_prefix(split: str, partition: tuple[int, int] | None) -> str:
    return split if partition is None else f"{split}-p{partition[0]:03d}of{partition[1]:03d}"


def _stats_chunks(work: Path, episodes: list[int], key: str) -> Iterator[np.ndarray]:
    for index in episodes:
        with np.load(work_paths(work, index)["npz"]) as data:
            yield data["state" if key == STATE_KEY else "action"]


def _task_counts(task_of_sample: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(task_of_sample, return_counts=True)
    return {str(t): int(c) for t, c in zip(values.tolist(), counts.tolist(), strict=True)}


def _with_task_counts(entries: list[dict], task_of_sample: np.ndarray) -> list[dict]:
    """Each shard entry with its samples per task: the shards cut the interleaved order in sequence,
    so shard k holds the order's rows after the samples of shards 0..k-1."""
    start = 0
    for entry in entries:
        entry["tasks"] = _task_counts(task_of_sample[start : start + entry["samples"]])
        start += entry["samples"]
    return entries


def _task_totals(episodes: list[int], samples: list[int], tasks: np.ndarray) -> dict[str, dict[str, int]]:
    """Per task of a split: its episodes and samples (what `b1k-shards inspect` and task balancing read)."""
    totals: dict[str, dict[str, int]] = {}
    for task, count in zip(tasks.tolist(), samples, strict=True):
        entry = totals.setdefault(str(task), {"episodes": 0, "samples": 0})
        entry["episodes"] += 1
        entry["samples"] += count
    return dict(sorted(totals.items(), key=lambda item: int(item[0])))


def finalize(
    plan: Plan, config: PreprocessConfig, work: Path, results: dict[int, EpisodeResult], skipped: list[dict]
) -> dict:
    out = Path(config.output_dir)
    # The new set is written whole into the work dir and swapped in once complete (`replace_set`), so
    # an earlier set in `out` (--overwrite) stays good until then. Never trust an earlier final stage.
    stage = work / STAGE_DIR
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()

    splits: dict[str, dict] = {}
    seed_of = {"train": 0, "val": 1}
    for split in ("train", "val"):
        episodes = sorted(i for i in results if plan.split_of(i) == split)
        tars = []
        for i in episodes:
            try:
                tars.append(WorkTar(work_paths(work, i)["tar"], results[i], config.frame_stride))
            except ValueError as exc:
                raise _unreadable(i, exc) from None
        order = interleave_order(
            [len(tar) for tar in tars],
            seed=(config.seed * 1000003 + seed_of[split]) & 0xFFFFFFFF,
            window=config.interleave_window,
        )
        shards = write_shards(tars, order, stage, _split_prefix(split, plan.partition), config)
        samples = len(order)
        tasks = np.asarray([results[i].task_index for i in episodes], dtype=np.int64)
        splits[split] = {
            "episodes": episodes,
            "shards": _with_task_counts([s.to_json() for s in shards], tasks[order[:, 0]]),
            "samples": samples,
            "frames": sum(results[i].length for i in episodes),
            "tasks": _task_totals(episodes, [len(tar) for tar in tars], tasks),
            "episode_tasks": {str(i): int(t) for i, t in zip(episodes, tasks.tolist(), strict=True)},
        }
        log.info(
            "%s: %d episodes, %d samples -> %d shards in %s", split, len(episodes), samples, len(shards), out
        )

    train = splits["train"]["episodes"]
    if not train:
        raise PreprocessError(
            "no train episodes were processed (all held out or skipped): cannot compute normalizer stats"
        )
    total = sum(results[i].length for i in train)
    stats, stats_values = {}, {}
    for key, dim in ((STATE_KEY, plan.selection.dim), (ACTION_KEY, ACTION_DIM)):
        entry = write_stats_values(
            stage,
            key,
            _stats_chunks(work, train, key),
            total,
            dim,
            episodes=[(i, results[i].length) for i in train],
        )
        stats_values[key] = entry
        stats[key] = compute_stats(load_stats_values(stage / entry["name"]))

    source = plan.source
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created_by": {
            "tool": TOOL,
            "version": tool_version(),
            "command": config.command_line or " ".join(sys.argv),
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
        "source": {
            "path": str(source.root.resolve()),
            "codebase_version": source.version,
            "fingerprint": source.fingerprint(),
            "fingerprint_of": "sha256 of the files under meta/ (names and contents)",
            "robot_type": source.info.get("robot_type"),
            "total_episodes": len(source.episodes),
        },
        "fps": source.fps,
        "frame_stride": config.frame_stride,
        "image_size": plan.image_size.describe(),
        "cameras": {
            c.name: {
                "video_key": c.video_key,
                "member": image_member(c.name),
                "height": c.height,
                "width": c.width,
                "source_height": plan.native_sizes[c.name][0],
                "source_width": plan.native_sizes[c.name][1],
                "encoding": "jpeg",
                "quality": config.jpeg_quality,
                "chroma_subsampling": "4:2:0",
                "resize": "none" if (c.height, c.width) == plan.native_sizes[c.name] else RESIZE_METHOD,
            }
            for c in plan.cameras
        },
        "state": {
            "preset": plan.selection.preset,
            "indices": list(plan.selection.indices),
            "names": list(plan.selection.names),
            "layout": plan.selection.layout.name,
            "source_dim": plan.selection.layout.dim,
            "not_standard_track": list(plan.selection.not_standard_track),
        },
        "action": {"dim": ACTION_DIM, "names": action_names()},
        "horizon": config.horizon,
        "temporal": {"alpha": float(config.temporal_alpha), "formula": TEMPORAL_FORMULA},
        "stats": stats,
        "stats_values": stats_values,
        "stats_scope": "train split, every frame (full frame rate, independent of --frame-stride), float64; "
        "q01/q99 exact (numpy linear interpolation over the sidecar values)",
        "splits": splits,
        "tasks": {str(k): v for k, v in sorted(source.tasks.items())},
        "seed": config.seed,
        "partition": None
        if plan.partition is None
        else {
            "index": plan.partition[0],
            "count": plan.partition[1],
            "rule": "sorted selected episodes [index::count]",
        },
        "selected_episodes": len(plan.selected),
        "skipped_episodes": skipped,
        "interleave": {
            "scheme": "seeded permutation of episodes; window of open episodes; next sample drawn from a window "
            "episode with probability proportional to its remaining samples",
            "window": config.interleave_window,
        },
        "options": config.fingerprint(),
        "warnings": plan.warnings,
        "totals": _totals(splits, results),
    }
    validate_manifest(manifest)
    replace_set(out, stage, dump_manifest(manifest))
    return manifest


def replace_set(out: Path, stage: Path, manifest_text: str) -> None:
    """Swap a complete new set (its shards and sidecars in `stage`) into `out`: the old manifest goes
    first (from then on `out` reads as incomplete, never as a mix), then the old shards and sidecars;
    the new files are renamed in (same filesystem: no copy) and the manifest is written last."""
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    for entry in out.iterdir():
        if entry.name.endswith((".tar", ".tmp")) and entry.is_file():
            entry.unlink()
    shutil.rmtree(out / "stats", ignore_errors=True)
    for entry in stage.iterdir():
        os.replace(entry, out / entry.name)
    atomic_write_text(out / MANIFEST_NAME, manifest_text)


def _totals(splits: dict, results: dict[int, EpisodeResult]) -> dict:
    frames = sum(r.length for r in results.values())
    samples = sum(s["samples"] for s in splits.values())
    shard_bytes = sum(sh["bytes"] for s in splits.values() for sh in s["shards"])
    source_bytes = sum(r.source_video_bytes for r in results.values())
    return {
        "episodes": len(results),
        "frames": frames,
        "samples": samples,
        "shards": sum(len(s["shards"]) for s in splits.values()),
        "bytes": shard_bytes,
        "bytes_per_sample": round(shard_bytes / samples, 1) if samples else 0.0,
        "source_video_bytes": source_bytes,
        "source_video_bytes_per_frame": round(source_bytes / frames, 1) if frames else 0.0,
        "source_video_bytes_note": "RGB camera videos only; v3.0 files shared by episodes are apportioned by duration",
    }


def run(config: PreprocessConfig, pool: EpisodePool | None = None) -> dict:
    """Run a whole preprocess; returns the manifest. `pool`: episode workers already started (the CLI
    starts them before its own imports), of at most `config.workers` processes; else they are
    started when the episodes to do are known. The pool is shut down when the episodes are done (or
    the run fails)."""
    started = time.perf_counter()
    try:
        return _run(config, pool, started)
    finally:
        if pool is not None:
            pool.shutdown(cancel=True)


def _run(config: PreprocessConfig, pool: EpisodePool | None, started: float) -> dict:
    plan = make_plan(config)
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise PreprocessError(f"--output-dir {out}: exists and is not a directory")
    try:
        with FolderLock(out, TOOL):  # held until the manifest is written and the work dir removed
            return _run_locked(plan, config, pool, started)
    except FolderLockedError as exc:
        raise PreprocessError(f"--output-dir {exc}") from None


def _run_locked(plan: Plan, config: PreprocessConfig, pool: EpisodePool | None, started: float) -> dict:
    out = Path(config.output_dir)
    log.info(
        "source %s (LeRobot %s, %d episodes, %g fps) -> %s",
        plan.source.root,
        plan.source.version,
        len(plan.source.episodes),
        plan.source.fps,
        out,
    )
    log.info(
        "%d episodes (%d held out for val%s), state %s (%d dims), cameras %s, horizon %d, stride %d, jpeg q%d",
        len(plan.episodes),
        len(plan.val & set(plan.episodes)),
        f", partition {config.partition}" if plan.partition else "",
        plan.selection.preset,
        plan.selection.dim,
        ", ".join(
            f"{c.name} {plan.native_sizes[c.name][0]}x{plan.native_sizes[c.name][1]}->{c.height}x{c.width}"
            for c in plan.cameras
        ),
        config.horizon,
        config.frame_stride,
        config.jpeg_quality,
    )
    work = prepare_output(config)
    if work is None:
        return json.loads((out / MANIFEST_NAME).read_text())
    results, skipped, frames_this_run = run_episodes(plan, config, work, pool)
    if skipped:
        log.warning("%d episodes skipped: %s", len(skipped), [s["episode_index"] for s in skipped])
    manifest = finalize(plan, config, work, results, skipped)
    shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    summarize(manifest, elapsed, frames_this_run)
    return manifest


def summarize(manifest: dict, elapsed: float, frames_this_run: int) -> dict:
    """The final summary line (and dict): frames, shards, bytes, bytes/frame vs the source video, time."""
    totals = manifest["totals"]
    summary = {
        **{k: v for k, v in totals.items() if not k.endswith("_note")},
        "seconds": elapsed,
        "frames_this_run": frames_this_run,
        "frames_per_second": frames_this_run / elapsed if elapsed else 0.0,
    }
    source = totals["source_video_bytes_per_frame"]
    ratio = f"x{totals['bytes_per_sample'] / source:.1f}" if source else "n/a"
    log.info(
        "done: %d episodes, %d frames -> %d samples in %d shards, %.1f MB; %.0f B/sample vs %.0f B/frame of "
        "source RGB video (%s); %.1f s, %d frames decoded in this run (%.1f frames/s)",
        totals["episodes"], totals["frames"], totals["samples"], totals["shards"], totals["bytes"] / 1e6,
        totals["bytes_per_sample"], source, ratio, elapsed, frames_this_run, summary["frames_per_second"],
    )  # fmt: skip
    return summary
