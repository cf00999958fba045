"""Helpers for tests that run `b1k-train` as a user would, in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def train_killed_after(args: list, out: Path, checkpoint: int, env: dict, timeout: float = 300) -> int:
    """Start `b1k-train args` (output dir `out`), SIGKILL its whole process group as soon as checkpoint
    `checkpoint` exists (no clean-up of any kind, like a preempted job), and return the step of the
    last checkpoint it left."""
    process = subprocess.Popen(
        [sys.executable, "-m", "train.cli", *map(str, args)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True,
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
