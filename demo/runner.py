"""Runs the demo's commands one after the other as subprocesses, as a user would type them: their
output streams through and into `demo.log`, each is timed, and a failing one stops the demo (`rel`
writes a path as the user would type it)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click


class StepFailed(click.ClickException):
    exit_code = 1


class Runner:
    """Runs the demo's commands one after the other, streaming their output and timing them."""

    def __init__(self, out: Path, total_steps: int):
        self.out = out
        self.total = total_steps
        self.index = 0
        self.bin = Path(sys.executable).parent  # the venv's bin dir: where the b1k-* scripts live
        self.log = (out / "demo.log").open("ab")
        self.timings: dict[str, float] = {}
        self.env = dict(os.environ)
        self.env.update(
            {
                "HF_HUB_OFFLINE": "1",  # the demo is offline: the backbone is local, nothing is downloaded
                "HF_DATASETS_OFFLINE": "1",
                "SVT_LOG": "1",  # libsvtav1's banner
                "PYTHONUNBUFFERED": "1",
                # The demo trains with 4 DataLoader workers on purpose (the original had to use 0); torch warns
                # when that exceeds the core count. Harmless here: the workers only decode small JPEGs.
                "PYTHONWARNINGS": "ignore:This DataLoader will create:UserWarning",
            }
        )

    def _echo(self, text: str = "", **style) -> None:
        click.secho(text, **style)
        self.log.write((click.unstyle(text) + "\n").encode())
        self.log.flush()

    def header(self, title: str) -> None:
        self.index += 1
        self._echo()
        self._echo(f"== [{self.index}/{self.total}] {title}", bold=True, fg="cyan")

    def run(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> str:
        """Run one command (streaming its stdout+stderr as it comes), return its output as text."""
        env = env or {}
        shown = " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(argv)])
        self._echo(f"$ {shown}", bold=True)
        exe = argv[0]
        if exe.startswith("b1k-"):
            exe = str(self.bin / exe)
        elif exe == "python":
            exe = sys.executable
        start = time.perf_counter()
        proc = subprocess.Popen(
            [exe, *argv[1:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**self.env, **env},
            bufsize=0,
        )
        captured = bytearray()
        out = sys.stdout.buffer
        assert proc.stdout is not None
        while chunk := os.read(proc.stdout.fileno(), 65536):
            captured += chunk
            out.write(chunk)
            out.flush()
            self.log.write(chunk)
        rc = proc.wait()
        elapsed = time.perf_counter() - start
        self.timings[name] = elapsed
        self.log.flush()
        if rc != 0:
            raise StepFailed(
                f"`{shown}` failed with exit status {rc} after {elapsed:.1f} s "
                f"(its output is above and in {self.out / 'demo.log'})"
            )
        self._echo(f"   ({elapsed:.1f} s)", dim=True)
        return captured.decode(errors="replace")


def rel(path: Path) -> str:
    """A path as the user would type it: relative to the current directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
