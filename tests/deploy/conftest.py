"""Checkpoints from `b1k-train` for the deploy tests (each trained 2 steps on a tiny shard set with the
tiny offline backbone, once per session):

* `checkpoint_2025` -- the 2025 layout (256-dim proprio, top32 indices), two tasks, 16 px cameras;
* `checkpoint_2026` -- the 2026 layout (61-dim proprio): the same shards with a manifest that records
  `state.layout: r1pro-2026` and the top32 indices of that layout, and cameras whose frames came from
  720/480 sources (`source_height`/`source_width`, `resize`), as `b1k-preprocess` records them;
* `checkpoint_relative` -- relative actions + per-timestep normalisation + EMA on an aligned-preset set;
* `legacy_checkpoint` -- `checkpoint_2025` rewritten in the format b1k-train wrote before tasks and layouts
  were recorded (image features `observation.images.<camera>`, provenance cameras with height/width only,
  no `state.layout`, no `tasks`), which `b1k-serve` must still serve.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from schemas.presets import preset_indices
from schemas.r1pro import CAMERAS, LAYOUT_2026
from tests.shardsets import read_manifest, write_manifest, write_shard_set

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TASKS = {0: "pick up the radio", 1: "put the dishes away"}


def train_checkpoint(shards: Path, backbone: Path, out: Path, *extra) -> Path:
    from train import cli

    args = [
        "--shards", shards, "--vlm-model", backbone, "--output-dir", out, "--batch-size", 2, "--chunk-size", 8,
        "--max-steps", 2, "--num-workers", 0, "--val-every", 0, "--no-progress", "--log-every", 1, *extra,
    ]  # fmt: skip
    result = CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output[-3000:]
    return out / "checkpoints" / "last" / "pretrained_model"


@pytest.fixture(scope="session")
def checkpoint_2025(tiny_backbone, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deploy-2025")
    write_shard_set(root / "set", episodes=4, length=10, val_episodes=(3,), horizon=8, tasks=TASKS)
    return train_checkpoint(root / "set", tiny_backbone, root / "run")


@pytest.fixture(scope="session")
def checkpoint_2026(tiny_backbone, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deploy-2026")
    write_shard_set(root / "set", episodes=4, length=10, val_episodes=(3,), horizon=8, tasks=TASKS)
    manifest = read_manifest(root / "set")
    indices = list(preset_indices("top32", LAYOUT_2026))
    manifest["state"].update(layout=LAYOUT_2026.name, indices=indices, names=LAYOUT_2026.names(indices))
    for camera in CAMERAS:
        manifest["cameras"][camera.name].update(
            source_height=camera.height, source_width=camera.width, resize="pillow-bilinear"
        )
    write_manifest(root / "set", manifest)
    return train_checkpoint(root / "set", tiny_backbone, root / "run")


@pytest.fixture(scope="session")
def checkpoint_relative(tiny_backbone, tmp_path_factory) -> Path:
    """The 2025 winners' recipe: relative arm/torso actions, per-chunk-step normalisation, EMA weights
    (an aligned-preset set with its stats sidecars)."""
    root = tmp_path_factory.mktemp("deploy-relative")
    write_shard_set(
        root / "set", episodes=4, length=10, val_episodes=(3,), horizon=8, tasks=TASKS,
        stats_sidecar=True, sidecar_episodes=True, state_preset="aligned",
    )  # fmt: skip
    extra = ("--action-repr", "relative", "--action-norm", "per_timestep", "--ema-decay", "0.9")
    return train_checkpoint(root / "set", tiny_backbone, root / "run", *extra)


def _legacy_key(key: str) -> str:
    for camera in CAMERAS:
        if key == camera.video_key:
            return camera.legacy_key
    return key


@pytest.fixture(scope="session")
def legacy_checkpoint(checkpoint_2025, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("deploy-legacy") / "pretrained_model"
    shutil.copytree(checkpoint_2025, target)
    config = json.loads((target / "config.json").read_text())
    config["input_features"] = {_legacy_key(k): v for k, v in config["input_features"].items()}
    (target / "config.json").write_text(json.dumps(config, indent=2))
    pre = json.loads((target / "policy_preprocessor.json").read_text())
    for step in pre["steps"]:
        features = step.get("config", {}).get("features")
        if features:
            step["config"]["features"] = {_legacy_key(k): v for k, v in features.items()}
    (target / "policy_preprocessor.json").write_text(json.dumps(pre, indent=2))
    provenance = json.loads((target / "b1k_provenance.json").read_text())
    provenance.pop("tasks", None)
    for key in ("layout", "source_dim"):
        provenance["state"].pop(key, None)
    provenance["cameras"] = {
        n: {"height": c["height"], "width": c["width"]} for n, c in provenance["cameras"].items()
    }
    (target / "b1k_provenance.json").write_text(json.dumps(provenance, indent=2))
    return target
