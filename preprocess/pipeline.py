"""The whole run, start to end: plan -> episodes -> final stage, in a locked output folder.

`run` is the entry (the CLI's and the tests'). It plans (`preprocess.plan`), takes the output
folder's lock, prepares the folder (`prepare_output`: empty, `--overwrite` or `--resume`), runs
the episodes into per-episode work files in `<output>/.work/` (`preprocess.episodes`), writes the
interleaved shards, the stats and the manifest, last and atomically (`preprocess.final_stage`,
`preprocess.manifest`), then removes the work dir. An interrupted run leaves the work dir:
`--resume` keeps the episodes it finished. Errors are `PreprocessError`s naming the file, episode
or option at fault.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from preprocess.episodes import run_episodes
from preprocess.estimate import check_room, estimate_cost
from preprocess.final_stage import finalize
from preprocess.manifest import TOOL, summarize
from preprocess.plan import Plan, PreprocessConfig, PreprocessError, make_plan
from preprocess.workers import EpisodePool
from schemas.manifest import MANIFEST_NAME, Manifest, parse_manifest
from shards.lock import LOCK_NAME, FolderLock, FolderLockedError
from shards.swap import restore_aside
from shards.writer import atomic_write_text

__all__ = ["PreprocessConfig", "PreprocessError", "prepare_output", "run"]

log = logging.getLogger(__name__)

WORK_DIR = ".work"
OPTIONS_FILE = "options.json"  # in the work dir: the options a `--resume` must match
_OURS = (MANIFEST_NAME, WORK_DIR, "stats", LOCK_NAME)  # besides shards: what `--overwrite` may replace


def run(config: PreprocessConfig, pool: EpisodePool | None = None) -> Manifest:
    """Run a whole preprocess; returns the manifest. `pool`: episode workers already started (the CLI
    starts them before its own imports), of at most `config.workers` processes; else they are
    started when the episodes to do are known. The pool is shut down when the episodes are done (or
    the run fails)."""
    started = time.perf_counter()
    try:
        plan = make_plan(config)
        out = Path(config.output_dir)
        if out.exists() and not out.is_dir():
            raise PreprocessError(f"--output-dir {out}: exists and is not a directory")
        restore_aside(out)  # a set a killed swap left beside the output folder (`shards.swap`)
        try:
            with FolderLock(out, TOOL):  # held until the manifest is written and the work dir removed
                return _run_locked(plan, config, pool, started)
        except FolderLockedError as exc:
            raise PreprocessError(f"--output-dir {exc}") from None
    finally:
        if pool is not None:
            pool.shutdown(cancel=True)


def _run_locked(plan: Plan, config: PreprocessConfig, pool: EpisodePool | None, started: float) -> Manifest:
    out = Path(config.output_dir)
    _log_plan(plan, config)
    work = prepare_output(config)
    if work is None:  # --resume of a finished set: nothing to do
        return parse_manifest((out / MANIFEST_NAME).read_bytes(), str(out / MANIFEST_NAME))
    _check_cost(plan, config)
    try:
        done = run_episodes(plan, config, work, pool)
    except BaseException:
        if pool is not None:  # stopped while the lock is held: no worker writes into a folder we left
            pool.shutdown(cancel=True)
        raise
    if pool is not None:
        pool.shutdown(wait=False)  # idle from here: the workers exit while the final stage runs
    if done.skipped:
        log.warning("%d episodes skipped: %s", len(done.skipped), [s["episode_index"] for s in done.skipped])
    manifest = finalize(plan, config, work, done.results, done.skipped)
    shutil.rmtree(work, ignore_errors=True)
    summarize(manifest, time.perf_counter() - started, done.frames_this_run)
    return manifest


def _log_plan(plan: Plan, config: PreprocessConfig) -> None:
    source = plan.source
    log.info(
        "source %s (LeRobot %s, %d episodes, %g fps) -> %s",
        source.root, source.version, len(source.episodes), source.fps, Path(config.output_dir),
    )  # fmt: skip
    cameras = ", ".join(
        f"{c.name} {plan.native_sizes[c.name][0]}x{plan.native_sizes[c.name][1]}->{c.height}x{c.width}"
        for c in plan.cameras
    )
    frames = sum(source.episode(i).length for i in plan.episodes)
    tasks = {task.task_id for i in plan.episodes if (task := plan.episode_tasks[i]) is not None}
    log.info(
        "selected %d tasks, %d episodes, %d frames (%d held out for val%s); state %s (%d dims), cameras %s, "
        "horizon %d, stride %d, jpeg q%d",
        len(tasks),
        len(plan.episodes),
        frames,
        len(plan.val & set(plan.episodes)),
        f", partition {config.partition}" if plan.partition else "",
        plan.selection.preset,
        plan.selection.dim,
        cameras,
        config.horizon,
        config.frame_stride,
        config.jpeg_quality,
    )


def _check_cost(plan: Plan, config: PreprocessConfig) -> None:
    """Log what the run will write and stop before it starts when the output filesystem lacks room
    (a resumed run counts the work files it already has)."""
    work = Path(config.output_dir) / WORK_DIR
    written = sum(p.stat().st_size for p in work.glob("*.tar")) if config.resume and work.is_dir() else 0
    check_room(
        estimate_cost(plan, config.frame_stride), Path(config.output_dir), written, config.ignore_free_space
    )


# ------------------------------------------------------------------ the output folder
def _is_ours(path: Path) -> bool:
    return path.name in _OURS or path.name.endswith((".tar", ".tmp"))


def prepare_output(config: PreprocessConfig) -> Path | None:
    """Check/prepare the output dir; returns the work dir, or None when `--resume` finds a finished set."""
    out = Path(config.output_dir)
    if config.overwrite and config.resume:
        raise PreprocessError("--overwrite and --resume are exclusive; give one")
    work = out / WORK_DIR
    if out.exists() and not out.is_dir():
        raise PreprocessError(f"--output-dir {out}: exists and is not a directory")
    entries = sorted(e for e in out.iterdir() if e.name != LOCK_NAME) if out.is_dir() else []
    if entries and config.resume:
        return _resumable(config, out, work)
    if entries and config.overwrite:
        _check_overwrite(out, work, entries)
    elif entries:
        raise PreprocessError(
            f"--output-dir {out} is not empty ({len(entries)} entries, e.g. {entries[0].name!r}); "
            "pass --overwrite to replace it or --resume to continue an interrupted run"
        )
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work / OPTIONS_FILE, json.dumps(config.fingerprint(), indent=2, sort_keys=True))
    return work


def _resumable(config: PreprocessConfig, out: Path, work: Path) -> Path | None:
    """The work dir of the interrupted run in `out`, if its options are these; None if it finished."""
    recorded = None
    if (work / OPTIONS_FILE).is_file():
        recorded = json.loads((work / OPTIONS_FILE).read_text())
    elif (out / MANIFEST_NAME).is_file():
        recorded = parse_manifest((out / MANIFEST_NAME).read_bytes(), str(out / MANIFEST_NAME)).options
    if recorded is None:
        raise PreprocessError(
            f"--resume: {out} holds no run of this tool to resume (no {WORK_DIR}/{OPTIONS_FILE} or {MANIFEST_NAME})"
        )
    differ = [
        f"{key}: was {recorded.get(key)!r}, now {value!r}"
        for key, value in config.fingerprint().items()
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


def _check_overwrite(out: Path, work: Path, entries: list[Path]) -> None:
    foreign = [e.name for e in entries if not _is_ours(e)]
    if foreign:
        raise PreprocessError(
            f"--overwrite: {out} holds files this tool did not write ({foreign[:10]}); "
            "remove them or choose another --output-dir"
        )
    # The previous set stays until the new one is complete and swapped in whole (`final_stage.replace_set`,
    # `shards.swap`); an earlier run's unfinished work is not a result and goes now.
    shutil.rmtree(work, ignore_errors=True)
    log.info("--overwrite: the new set is built beside the one in %s and replaces it once complete", out)
