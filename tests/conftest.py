"""Shared fixtures: synthetic BEHAVIOR datasets in both layouts (built once per test session).

* `synthetic_v30` -- lerobot v3.0 layout, 4 episodes (lengths 40, 75, 90, 60; tasks 1, 6, 6, 6), head
  64 px, wrists 48 px, depth video; 3 episodes per data file and 2 per mp4 file, so readers meet
  file boundaries (data and video boundaries at different episodes).
* `synthetic_v21` -- the same episodes in BEHAVIOR's v2.1 release layout (task-0001 / task-0006
  folders, episode indices 10000, 60000, 60010, 60020).
* `synthetic_dataset` -- factory: `synthetic_dataset(layout="v2.1", lengths=(5, 7), ...)` builds (and
  caches per session) a dataset for any `SyntheticConfig` fields.

* `tiny_backbone` -- `demo.backbone.build_tiny_backbone` once per session (vision image_size 32,
  patch 8): the offline stand-in for SmolVLM that every training test loads.
* `quickstart_run` -- the README's quick start (b1k-preprocess -> b1k-shards -> b1k-train with 8
  workers, 4 steps) on `synthetic_v30`, once per session: the end-to-end run that tests/test_readme.py
  and tests/train/test_train.py both check (`tests.test_readme.QuickstartRun`).

Each dataset fixture returns a `demo.synthetic.SyntheticDatasetInfo` (`.root`, `.episodes`, `.camera_sizes`, ...).
Treat the built datasets as read-only: tests that corrupt files copy the dataset first
(`shutil.copytree(info.root, tmp_path / "ds")`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from demo.synthetic import SyntheticConfig, SyntheticDatasetInfo, build_dataset

# Everything runs offline: lerobot and huggingface_hub must never try the network in tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("SVT_LOG", "1")

FIXTURE_CONFIG = {"head_size": 64, "wrist_size": 48, "lengths": (40, 75, 90, 60), "tasks": (1, 6, 6, 6)}


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Callable[..., SyntheticDatasetInfo]:
    """Factory: build a synthetic dataset from `SyntheticConfig` fields (cached per session)."""
    cache: dict[SyntheticConfig, SyntheticDatasetInfo] = {}

    def build(**fields) -> SyntheticDatasetInfo:
        for key in ("lengths", "tasks"):
            if key in fields:
                fields[key] = tuple(fields[key])
        config = SyntheticConfig(**fields)
        if config not in cache:
            root = tmp_path_factory.mktemp(f"synthetic-{config.layout}")
            cache[config] = build_dataset(root, config)
        return cache[config]

    return build


@pytest.fixture(scope="session")
def synthetic_v30(synthetic_dataset) -> SyntheticDatasetInfo:
    return synthetic_dataset(
        layout="v3.0", episodes_per_data_file=3, episodes_per_video_file=2, **FIXTURE_CONFIG
    )


@pytest.fixture(scope="session")
def synthetic_v21(synthetic_dataset) -> SyntheticDatasetInfo:
    return synthetic_dataset(layout="v2.1", **FIXTURE_CONFIG)


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    from demo.backbone import TinyBackboneSpec, build_tiny_backbone

    return build_tiny_backbone(
        tmp_path_factory.mktemp("tiny-smolvlm"), TinyBackboneSpec(image_size=32, patch_size=8)
    )


@pytest.fixture(scope="session")
def quickstart_run(synthetic_v30, tiny_backbone, tmp_path_factory):
    from tests.test_readme import run_quickstart

    return run_quickstart(synthetic_v30, tiny_backbone, tmp_path_factory.mktemp("quickstart"))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The tiny models are fastest on one thread, CI machines are small and shared, and equal thread
    counts keep float sums bit-identical (deploy's bit-for-bit comparisons)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
