"""Helpers for tests that run `b1k-train` as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def run_train(args: list, timeout: float = 600, env: dict = ENV) -> subprocess.CompletedProcess:
    """`b1k-train args` in a subprocess, its output captured as text."""
    command = [sys.executable, "-m", "train.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def train_log(out: Path, kind: str = "train") -> dict[int, dict]:
    """The records of one kind of a run's train_log.jsonl, by step."""
    lines = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in lines if r["kind"] == kind}


def train_killed_after(args: list, out: Path, checkpoint: int, env: dict = ENV, timeout: float = 300) -> int:
    """Start `b1k-train args` (output dir `out`), SIGKILL its whole process group as soon as checkpoint
    `checkpoint` exists (no clean-up of any kind, like a preempted job), and return the step of the
    last checkpoint it left. The run is niced: on a loaded machine this poller still wakes in time."""
    process = subprocess.Popen(
        [sys.executable, "-m", "train.cli", *map(str, args)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True,
        preexec_fn=lambda: os.nice(19),
    )  # fmt: skip
    deadline = time.time() + timeout
    try:
        while not (out / "checkpoints" / f"{checkpoint:06d}").is_dir():
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.time() < deadline, f"no checkpoint {checkpoint} after {timeout} s"
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        process.stderr.close()
    return int((out / "checkpoints" / "last").resolve().name)


@dataclass
class KilledAndResumed:
    ref: Path  # the uninterrupted run's output dir
    out: Path  # the killed and resumed run's
    killed_at: int  # the step of the last checkpoint the killed run left
    resumed: subprocess.CompletedProcess  # the --resume run


def kill_and_resume(
    args_for: Callable[[Path], list], tmp_path: Path, *, checkpoint: int, max_steps: int
) -> KilledAndResumed:
    """An uninterrupted run, and the same run SIGKILLed after checkpoint `checkpoint` then resumed
    with --resume: both must exit 0 and the killed one must not have finished first."""
    ref, out = tmp_path / "ref", tmp_path / "killed"
    done = run_train(args_for(ref))
    assert done.returncode == 0, done.stderr[-4000:]
    killed_at = train_killed_after(args_for(out), out, checkpoint)
    assert killed_at < max_steps, "the run finished before it was killed"
    resumed = run_train([*args_for(out), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    return KilledAndResumed(ref, out, killed_at, resumed)
