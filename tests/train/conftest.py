"""Fixtures of the trainer tests: small real tar shard sets (the tiny SmolVLM backbone,
`tiny_backbone`, is in tests/conftest.py).

* `make_shards` -- factory: `make_shards(name, **tests.shardsets.write_shard_set kwargs)` -> set
  dir, cached per session by name.
* `small_set` -- 12 episodes of 20 frames (episodes 10, 11 in val), 3 cameras 16x16, horizon 8, alpha 2,
  30 samples per shard (7 train shards, 2 val shards).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.shardsets import write_shard_set

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def make_shards(tmp_path_factory):
    """Factory: `make_shards(name, **write_shard_set kwargs)` -> set dir (cached per session by name)."""
    cache: dict[str, Path] = {}

    def make(name: str, **kwargs) -> Path:
        if name not in cache:
            root = tmp_path_factory.mktemp(f"shards-{name}")
            write_shard_set(root, **kwargs)
            cache[name] = root
        return cache[name]

    return make


@pytest.fixture(scope="session")
def small_set(make_shards) -> Path:
    return make_shards(
        "small", episodes=12, length=20, val_episodes=(10, 11), horizon=8, alpha=2.0, samples_per_shard=30
    )


@pytest.fixture(scope="session")
def synthetic_shards(synthetic_dataset, tmp_path_factory) -> Path:
    """`b1k-preprocess` output of a synthetic 22-episode BEHAVIOR dataset (20 train, 2 val episodes),
    32 px cameras, horizon 10: real interleaved shards as the preprocess writes them."""
    import subprocess
    import sys

    info = synthetic_dataset(
        layout="v3.0",
        episodes=22,
        lengths=(24, 26, 28, 30),
        tasks=(1, 6),
        head_size=32,
        wrist_size=32,
        depth=False,
    )
    out = tmp_path_factory.mktemp("synthetic-shards") / "set"
    command = [
        sys.executable, "-m", "preprocess.cli", "--dataset-path", str(info.root), "--output-dir", str(out),
        "--horizon", "10", "--val-episodes", "20,21", "--workers", "2", "--shard-max-samples", "50",
        "--image-size", "32", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out
