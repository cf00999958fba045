"""Small helpers of the deploy tests: load a checkpoint as `b1k-serve` does, read its provenance, run
`b1k-serve` in a subprocess."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from deploy.adapter import ObservationAdapter
from deploy.checkpoint import load_checkpoint
from deploy.policy import ChunkModel


def chunk_model(checkpoint: Path, *, prompt: str | None = None, max_image_side: int = 4096) -> ChunkModel:
    loaded = load_checkpoint(checkpoint, device="cpu")
    return ChunkModel(loaded, ObservationAdapter(loaded.spec, prompt=prompt, max_image_side=max_image_side))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a server that must come back on the same port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def provenance(checkpoint: Path) -> dict:
    return json.loads((Path(checkpoint) / "b1k_provenance.json").read_text())


class ServeProcess:
    """`b1k-serve ARGS` in a subprocess (the console script's module), with its log collected; `port` once
    it listens. Stopped with SIGTERM, as `docker stop` does."""

    LISTENING = re.compile(r"listening on ws://[\d.]+:(\d+)")

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", *args], stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := re.search(pattern, self.log):
                return found
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"b1k-serve never logged {pattern!r}:\n{self.log[-3000:]}")

    @property
    def port(self) -> int:
        return int(self.wait_for(self.LISTENING.pattern).group(1))

    def stop(self) -> int:
        self.process.terminate()
        code = self.process.wait(30)
        self._reader.join(10)
        return code

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.stop()
