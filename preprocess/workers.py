"""The process pool that runs episodes, and what runs inside its workers.

Workers are forked from a `forkserver` that has imported the episode code (numpy, PyAV, pyarrow,
Pillow: ~0.3 s CPU) once, before any video is opened: a worker starts warm, the imports are paid
once instead of once per worker, and no worker is a fork of a process that has run FFmpeg threads
(PyAV is not fork-safe: the parent is never forked). `EpisodePool` starts its workers at once, so
`b1k-preprocess` starts the pool before it imports anything heavy itself: the fork server's imports
overlap the parent's imports and planning instead of following them. This module imports only the
standard library at load time (it is imported by every worker before anything else).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from preprocess.episode import EpisodeOptions, EpisodeResult


class WorkerError(RuntimeError):
    """An unexpected error inside a worker, with its traceback as text (always picklable)."""


_WORKER_FRAMES = None  # a shared counter, set in each pool worker


def _init_worker(counter, run_pid: int) -> None:
    global _WORKER_FRAMES
    _WORKER_FRAMES = counter
    threading.Thread(target=_exit_when_gone, args=(run_pid,), name="run-watch", daemon=True).start()


def _exit_when_gone(run_pid: int) -> None:
    """Exit as soon as the b1k-preprocess process has (killed: it would have stopped us otherwise),
    mid-episode or idle: an idle worker waits on a queue the run's death does not close, and our
    parent, the fork server, outlives the run while its children hold it open. A resumed run removes
    the temporary files this leaves."""
    try:
        pidfd = os.pidfd_open(run_pid)  # readable once that process has exited, even if unreaped
    except ProcessLookupError:
        os._exit(3)
    except (AttributeError, OSError):  # no pidfd (not Linux >= 5.3): poll the pid instead
        while True:
            try:
                os.kill(run_pid, 0)
            except ProcessLookupError:
                os._exit(3)
            time.sleep(1.0)
    select.select([pidfd], [], [])
    os._exit(3)


def _warm_up() -> None:
    """Import the episode code now (the parent is still planning), not with the first episode: a no-op
    when the fork server's preload already has."""
    # an import error is raised again by the first episode, with its own message
    with contextlib.suppress(Exception):
        import preprocess.episode  # noqa: F401


def _count_frames(count: int) -> None:
    if _WORKER_FRAMES is not None:
        with _WORKER_FRAMES.get_lock():
            _WORKER_FRAMES.value += count


def episode_task(episode_index: int, options: EpisodeOptions, work_dir: str) -> EpisodeResult:
    """`process_episode` in a worker: data errors travel as they are, anything else as a `WorkerError`
    carrying the worker's traceback."""
    from preprocess.episode import process_episode
    from preprocess.source import SourceError

    try:
        return process_episode(episode_index, options, work_dir, _count_frames)
    except SourceError:  # EpisodeDataError included
        raise
    except Exception as exc:
        raise WorkerError(
            f"episode {episode_index}: unexpected {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        ) from None


class EpisodePool:
    """`workers` processes, started (and warming up) as soon as this is built, by a thread: starting a
    worker waits for the fork server's preload (~0.3 s), which the caller spends on its own imports."""

    def __init__(self, workers: int):
        context = get_context("forkserver")
        # preprocess.cli: what b1k-preprocess's script imports, and each worker runs that script as its
        # main module ("__main__" itself is not preloaded: CPython's fork server never gets its path)
        context.set_forkserver_preload(["preprocess.cli", "preprocess.episode"])
        self.workers = workers
        self.counter = context.Value("q", 0)  # frames decoded by all workers (for the progress bar)
        self.executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self.counter, os.getpid()),
        )
        self._start_error: BaseException | None = None
        self._starting = threading.Thread(target=self._start_workers, name="episode-pool-start", daemon=True)
        self._starting.start()

    def _start_workers(self) -> None:
        # The executor starts a process per submit while none is idle: one warm-up task per worker
        # starts them all now.
        try:
            for _ in range(self.workers):
                self.executor.submit(_warm_up)
        except BaseException as exc:  # raised again by the first submit
            self._start_error = exc

    def _started(self) -> None:
        self._starting.join()
        if self._start_error is not None:
            raise self._start_error

    def submit(self, episode_index: int, options: EpisodeOptions, work_dir: str) -> Future:
        self._started()
        return self.executor.submit(episode_task, episode_index, options, work_dir)

    def frames_decoded(self) -> int:
        with self.counter.get_lock():
            return self.counter.value

    def shutdown(self, cancel: bool = False, wait: bool = True) -> None:
        """Stop the workers after their current task (`cancel`: drop the queued ones; `wait`: until they
        have exited). Calling it again is harmless."""
        self._starting.join()
        self.executor.shutdown(wait=wait, cancel_futures=cancel)


def pool_size(workers: int | None) -> int:
    """`--workers` (None: one per core)."""
    return max(1, workers or os.cpu_count() or 1)
