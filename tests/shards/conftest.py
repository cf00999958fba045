"""Fixtures of the shards/ tests: small shard sets (built once, copied per test) and a local
HTTP server on 127.0.0.1 (threaded, ephemeral port) serving a directory."""

from __future__ import annotations

import contextlib
import functools
import shutil
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.shardsets import WIDE_CAMERAS, write_shard_set

# The shards/ tests' set: episodes 0..4 (9, 6, 3, 5, 7 frames), episode 3 held out, a wide head
# camera, 7 samples per shard (so shards mix episodes and split sets have several), stats sidecars.
SHARD_SET = {
    "episodes": {0: 9, 1: 6, 2: 3, 3: 5, 4: 7},
    "val_episodes": (3,),
    "cameras": WIDE_CAMERAS,
    "horizon": 4,
    "alpha": 0.5,
    "tasks": {0: "pick up the egg"},
    "samples_per_shard": 7,
    "stats_sidecar": True,
}


class _QuietHandler(SimpleHTTPRequestHandler):
    def __init__(self, *args, log: list[str], **kwargs):
        self._log = log
        super().__init__(*args, **kwargs)

    def log_message(self, format, *args):
        pass

    def send_head(self):
        self._log.append(self.path)
        return super().send_head()


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch):
    """curl and urllib must reach the test server directly, whatever proxy the machine sets."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def _built_sets(tmp_path_factory) -> Callable[..., Path]:
    cache: dict[str, Path] = {}

    def build(**kwargs) -> Path:
        key = repr(sorted(kwargs.items()))
        if key not in cache:
            root = tmp_path_factory.mktemp("shardset") / "set"
            write_shard_set(root, **{**SHARD_SET, **kwargs})
            cache[key] = root
        return cache[key]

    return build


@pytest.fixture
def make_set(_built_sets, tmp_path) -> Callable[..., Path]:
    """make_set(name, **write_shard_set kwargs over SHARD_SET) -> a fresh copy of that set at tmp_path/name."""

    def make(name: str = "set", **kwargs) -> Path:
        dst = tmp_path / name
        shutil.copytree(_built_sets(**kwargs), dst)
        return dst

    return make


@pytest.fixture
def shard_set(make_set) -> Path:
    """A clean default set: episodes 0..4 (9, 6, 3, 5, 7 frames), episode 3 held out, 7 samples/shard."""
    return make_set("set")


@pytest.fixture
def http_log() -> list[str]:
    """The paths `http_server` was asked for, in order."""
    return []


@contextlib.contextmanager
def serving(handler) -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1 (ephemeral port) with this request handler: its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def http_server(tmp_path, http_log) -> Iterator[tuple[Path, str]]:
    """(directory, base URL): everything under the directory is served at the URL."""
    www = tmp_path / "www"
    www.mkdir()
    with serving(functools.partial(_QuietHandler, directory=str(www), log=http_log)) as url:
        yield www, url
