"""Run the plan's episodes: each one becomes its work files (`preprocess.episode`, one episode).

Episodes whose work files a previous run left complete are kept (`--resume`); the others run in
this process (one to do, or `--workers 1`) or over the process pool (`preprocess.workers`), at
most two per worker in flight so a failure stops the run promptly. A bad episode fails the run
with a message naming it, or is recorded and skipped (`--skip-bad-episodes`). Progress: a bar on
a terminal, else a log line every 30 s.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from preprocess.episode import EpisodeOptions, EpisodeResult, process_episode, work_paths
from preprocess.plan import Plan, PreprocessConfig, PreprocessError
from preprocess.source import EpisodeDataError, SourceError
from preprocess.workers import EpisodePool, WorkerError, pool_size
from shards.writer import atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class EpisodesDone:
    """What `run_episodes` leaves for the final stage."""

    results: dict[int, EpisodeResult]  # episode index -> what its work files hold
    skipped: list[dict]  # {"episode_index", "reason"} of each skipped episode, sorted
    frames_this_run: int  # frames decoded by this run (not by the run it resumed)


# ------------------------------------------------------------------ resume
def load_done(work: Path, episode_index: int) -> EpisodeResult | dict | None:
    """The episode's result if its work files are complete, its skip record if it was skipped, else None."""
    paths = work_paths(work, episode_index)
    if paths.skipped.is_file():
        return json.loads(paths.skipped.read_text())
    if paths.tar.is_file() and paths.json.is_file() and paths.npz.is_file():
        record = json.loads(paths.json.read_text())
        if "sample_bytes" in record:  # (a work dir of an older version lacks it: redo the episode)
            # fields an older version recorded and this one dropped (e.g. decode_ahead_from) are ignored
            known = {f.name for f in dataclasses.fields(EpisodeResult)}
            return EpisodeResult(**{k: v for k, v in record.items() if k in known})
    return None


def _clean_partial(work: Path) -> None:
    """Temporary files of a killed run (a resumed run rewrites those episodes)."""
    for path in work.iterdir():
        if path.name.endswith((".tmp", ".part")):
            path.unlink(missing_ok=True)


# ------------------------------------------------------------------ progress
class Progress:
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


# ------------------------------------------------------------------ running them
def resolve_decoder_threads(requested: int, workers: int) -> int:
    """Threads per video decoder: `requested` if > 0; else FFmpeg's own choice (0: one per core)
    for a single worker, and cores // workers for a pool (the cores are shared by the workers:
    more decoder threads than that only contend)."""
    if requested > 0:
        return requested
    if workers == 1:
        return 0
    return max(1, (os.cpu_count() or 1) // workers)


class _Outcomes:
    """Records each episode's outcome as it arrives: a result, a skipped bad episode, or the run's
    error; and moves the progress bar. Episodes run in this process report their frames here
    (`frames`), and an episode's frames not reported (a skipped one's unreached frames) are added when
    it ends; pool workers count their frames themselves (`EpisodePool.frames_decoded`)."""

    def __init__(
        self,
        config: PreprocessConfig,
        work: Path,
        lengths: dict[int, int],
        progress: Progress,
        pooled: bool,
    ):
        self.config = config
        self.work = work
        self.lengths = lengths
        self.progress = progress
        self.pooled = pooled
        self.results: dict[int, EpisodeResult] = {}
        self.skipped: list[dict] = []
        self.shown: dict[int, int] = {}  # frames reported per unfinished episode (in this process)

    def frames(self, index: int, count: int) -> None:
        self.shown[index] = self.shown.get(index, 0) + count
        self.progress.frames_done(count)

    def _frames_left(self, index: int) -> int:
        return 0 if self.pooled else self.lengths[index] - self.shown.pop(index, 0)

    def done(self, result: EpisodeResult) -> None:
        self.results[result.episode_index] = result
        self.progress.episode_done(self._frames_left(result.episode_index))
        log.debug(
            "episode %d: %d samples, %d bytes, %.1f s",
            result.episode_index, result.samples, result.tar_bytes, result.seconds,
        )  # fmt: skip

    def failed(self, index: int, exc: BaseException) -> None:
        """Skips a bad episode under --skip-bad-episodes; else raises the run's `PreprocessError`."""
        if isinstance(exc, EpisodeDataError) and self.config.skip_bad_episodes:
            self._skip(index, exc)
            return
        if isinstance(exc, (EpisodeDataError, SourceError, WorkerError)):
            raise PreprocessError(str(exc)) from None
        if isinstance(exc, BrokenProcessPool):
            raise PreprocessError(
                f"a worker process died while processing episode {index} (killed, or out of memory?); "
                "episodes already done are kept: rerun with --resume (fewer --workers if memory is short)"
            ) from None
        raise PreprocessError(f"episode {index}: {type(exc).__name__}: {exc}") from exc

    def _skip(self, index: int, exc: EpisodeDataError) -> None:
        record = {"episode_index": index, "reason": str(exc)}
        paths = work_paths(self.work, index)
        atomic_write_text(paths.skipped, json.dumps(record))
        for path in (paths.tar, paths.npz, paths.json):
            path.unlink(missing_ok=True)
        self.skipped.append(record)
        log.warning("skipping episode %d (--skip-bad-episodes): %s", index, exc)
        self.progress.episode_done(self._frames_left(index))


def run_episodes(
    plan: Plan, config: PreprocessConfig, work: Path, pool: EpisodePool | None = None
) -> EpisodesDone:
    """Process every episode of the plan not already done. `pool`: workers the caller started (and
    shuts down), used when more than one episode is to do; without one, a pool is started here when
    needed (and shut down here)."""
    _clean_partial(work)
    lengths = {i: plan.source.episode(i).length for i in plan.episodes}
    done = {i: load_done(work, i) for i in plan.episodes}
    todo = [i for i in plan.episodes if done[i] is None]
    results = {i: r for i, r in done.items() if isinstance(r, EpisodeResult)}
    skipped = [r for r in done.values() if isinstance(r, dict)]
    if results or skipped:
        log.info("resume: %d episodes already done, %d to go", len(results) + len(skipped), len(todo))
    progress = Progress(
        total_frames=sum(lengths.values()),
        done_frames=sum(lengths[i] for i in results) + sum(lengths[s["episode_index"]] for s in skipped),
        total_episodes=len(plan.episodes),
        done_episodes=len(results) + len(skipped),
        enabled=config.progress,
    )
    # Longest episodes first, so the last to finish are short (the order does not change the output).
    todo.sort(key=lambda i: (-lengths[i], i))
    workers = max(1, min(pool_size(config.workers), len(todo)))
    outcomes = _Outcomes(config, work, lengths, progress, pooled=workers > 1)
    outcomes.results.update(results)
    outcomes.skipped.extend(skipped)
    options = dataclasses.replace(
        plan.options, decoder_threads=resolve_decoder_threads(config.decoder_threads, workers)
    )
    try:
        if workers == 1:
            _run_here(todo, options, work, outcomes)
        elif pool is not None:
            _run_pool(todo, options, work, pool, workers, outcomes)
        else:
            _run_own_pool(todo, options, work, workers, outcomes)
    finally:
        progress.close()
    return EpisodesDone(
        results=outcomes.results,
        skipped=sorted(outcomes.skipped, key=lambda s: s["episode_index"]),
        frames_this_run=sum(lengths[i] for i in todo if i in outcomes.results),
    )


def _run_here(todo: list[int], options: EpisodeOptions, work: Path, outcomes: _Outcomes) -> None:
    """One episode after the other in this process."""
    for index in todo:

        def on_frames(count: int, index: int = index) -> None:
            outcomes.frames(index, count)

        try:
            result = process_episode(index, options, work, on_frames)
        except Exception as exc:
            outcomes.failed(index, exc)
        else:
            outcomes.done(result)


def _run_own_pool(
    todo: list[int], options: EpisodeOptions, work: Path, workers: int, outcomes: _Outcomes
) -> None:
    pool = EpisodePool(workers)
    try:
        _run_pool(todo, options, work, pool, workers, outcomes)
    except BaseException:
        pool.shutdown(cancel=True)
        raise
    pool.shutdown(wait=False)  # the workers exit while the final stage runs


def _run_pool(
    todo: list[int], options: EpisodeOptions, work: Path, pool: EpisodePool, workers: int, outcomes: _Outcomes
) -> None:
    """The episodes over the pool's workers; the bar follows the frames the workers count."""
    pending: dict[Future, int] = {}
    queue = list(reversed(todo))
    shown = pool.frames_decoded()
    try:
        # At most 2 episodes per worker in flight: a worker never waits for its next one, and a
        # failure leaves few queued episodes to cancel.
        while queue or pending:
            while queue and len(pending) < 2 * workers:
                index = queue.pop()
                try:
                    pending[pool.submit(index, options, str(work))] = index
                except BrokenProcessPool as exc:  # a worker died before this episode was queued
                    outcomes.failed(index, exc)
            finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            decoded = pool.frames_decoded()
            outcomes.progress.frames_done(decoded - shown)
            shown = decoded
            for future in finished:
                index = pending.pop(future)
                exc = future.exception()
                if exc is None:
                    outcomes.done(future.result())
                else:
                    outcomes.failed(index, exc)
    except BaseException:
        for future in pending:
            future.cancel()
        raise
