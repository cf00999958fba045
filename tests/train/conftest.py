"""Fixtures of the trainer tests: a tiny SmolVLM backbone and small real tar shard sets.

* `tiny_backbone` -- `train.tiny_backbone.build_tiny_backbone` once per session (vision image_size 32).
* `make_shards` -- factory: `make_shards(name, **tests.train.shardset.write_shard_set kwargs)` -> set
  dir, cached per session by name.
* `small_set` -- 12 episodes of 20 frames (episodes 10, 11 in val), 3 cameras 16x16, horizon 8, alpha 2,
  30 samples per shard (7 train shards, 2 val shards).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.train.shardset import write_shard_set

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    from train.tiny_backbone import TinyBackboneSpec, build_tiny_backbone

    return build_tiny_backbone(tmp_path_factory.mktemp("tiny-smolvlm"), TinyBackboneSpec(image_size=32, patch_size=8))


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
    return make_shards("small", episodes=12, length=20, val_episodes=(10, 11), horizon=8, alpha=2.0, samples_per_shard=30)
