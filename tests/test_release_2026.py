"""The 2026 release end to end: a v3.0 set written by lerobot's own writer with a 61-dim state and two
tasks -> b1k-preprocess -> b1k-train -> a checkpoint that lerobot's own tools feed with the source
dataset's items as they are (the dataset's feature keys, the state at the recorded indices)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from schemas.presets import preset_indices
from schemas.r1pro import CAMERAS, LAYOUT_2026
from schemas.sample import parse_sample_key
from tests.preprocess.helpers import preprocess, read_set
from tests.preprocess.lerobot_writer import build_lerobot_dataset, lr_state
from train import cli

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LENGTHS = (14, 18, 10, 12)
TASKS = ("hide the eggs", "pick up the radio")  # episode e does TASKS[e % 2]
VAL = 3


@pytest.fixture(scope="module")
def release_2026(tmp_path_factory):
    """(dataset root, shard set, checkpoint dir) of a 61-dim two-task set, trained for two steps."""
    root = tmp_path_factory.mktemp("lerobot-2026")
    dataset = build_lerobot_dataset(root / "ds", lengths=LENGTHS, head=48, wrist=32, task=TASKS, state_dim=61)
    shards = root / "set"
    preprocess(dataset, shards, horizon=8, image_size="24", val_episodes=str(VAL))
    return dataset, shards


@pytest.fixture(scope="module")
def checkpoint_2026(release_2026, tiny_backbone, tmp_path_factory) -> Path:
    _, shards = release_2026
    out = tmp_path_factory.mktemp("run-2026")
    args = [
        "--shards", shards, "--vlm-model", tiny_backbone, "--output-dir", out, "--batch-size", 4,
        "--chunk-size", 6, "--max-steps", 2, "--num-workers", 0, "--val-every", 0, "--no-progress",
    ]  # fmt: skip
    result = CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return (out / "checkpoints" / "last").resolve() / "pretrained_model"


def test_the_61_dim_state_is_the_2026_layout_and_top32_selects_its_indices(release_2026):
    _, shards = release_2026
    manifest, splits = read_set(shards)
    top32 = list(preset_indices("top32", LAYOUT_2026))
    assert manifest["state"]["layout"] == "r1pro-2026" and manifest["state"]["source_dim"] == 61
    assert manifest["state"]["indices"] == top32
    assert manifest["state"]["names"][:2] == ["arm_left_qpos_0", "arm_left_qpos_1"]
    samples = 0
    for split in splits.values():
        for key, sample in split.items():
            episode, frame = parse_sample_key(key)
            np.testing.assert_array_equal(sample["state.npy"], lr_state(episode, frame, 61)[top32])
            samples += 1
    assert samples == sum(LENGTHS)


def test_tasks_are_right_per_sample_and_counted_per_split_and_shard(release_2026):
    _, shards = release_2026
    manifest, splits = read_set(shards)
    index_of = {task: int(index) for index, task in manifest["tasks"].items()}
    assert sorted(index_of) == sorted(TASKS)
    for split in splits.values():
        for key, sample in split.items():
            episode, _ = parse_sample_key(key)
            assert sample["json"]["task"] == TASKS[episode % 2]
            assert sample["json"]["task_index"] == index_of[TASKS[episode % 2]]
    train = manifest["splits"]["train"]
    assert train["tasks"] == {
        str(index_of[TASKS[0]]): {"episodes": 2, "samples": LENGTHS[0] + LENGTHS[2]},
        str(index_of[TASKS[1]]): {"episodes": 1, "samples": LENGTHS[1]},
    }
    assert train["episode_tasks"] == {str(e): index_of[TASKS[e % 2]] for e in (0, 1, 2)}
    per_shard: dict[str, int] = {}
    for shard in train["shards"]:
        assert sum(shard["tasks"].values()) == shard["samples"]
        for task, count in shard["tasks"].items():
            per_shard[task] = per_shard.get(task, 0) + count
    assert per_shard == {task: totals["samples"] for task, totals in train["tasks"].items()}
    assert manifest["splits"]["val"]["tasks"] == {
        str(index_of[TASKS[1]]): {"episodes": 1, "samples": LENGTHS[3]}
    }


def test_the_checkpoint_declares_the_datasets_keys_and_records_layout_and_tasks(
    checkpoint_2026, release_2026
):
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    _, shards = release_2026
    policy = SmolVLAPolicy.from_pretrained(checkpoint_2026)
    assert set(policy.config.image_features) == {c.video_key for c in CAMERAS}
    provenance = json.loads((checkpoint_2026 / "b1k_provenance.json").read_text())
    assert provenance["state"]["layout"] == "r1pro-2026" and provenance["state"]["source_dim"] == 61
    assert provenance["state"]["indices"] == list(preset_indices("top32", LAYOUT_2026))
    manifest = json.loads((shards / "manifest.json").read_text())
    assert provenance["tasks"] == manifest["tasks"]
    head = provenance["cameras"]["head"]
    assert head["video_key"] == "observation.images.rgb.head"
    assert (head["height"], head["width"], head["source_height"], head["resize"]) == (
        24,
        24,
        48,
        "pillow-bilinear",
    )


def test_a_lerobot_dataset_item_feeds_the_checkpoint_with_no_renaming(checkpoint_2026, release_2026):
    """Acceptance 2: LeRobotDataset's item as it comes (the dataset's keys, native-size frames), the state
    selected at the checkpoint's recorded indices, through the checkpoint's own processors."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    dataset_root, _ = release_2026
    policy = SmolVLAPolicy.from_pretrained(checkpoint_2026)
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(checkpoint_2026))
    indices = json.loads((checkpoint_2026 / "b1k_provenance.json").read_text())["state"]["indices"]
    dataset = LeRobotDataset("test/b1k-lerobot-writer", root=dataset_root, video_backend="pyav")
    item = dataset[LENGTHS[0] + 5]  # episode 1, frame 5
    observation = {key: item[key] for key in policy.config.image_features}
    observation["observation.state"] = item["observation.state"][indices]
    observation["task"] = item["task"]
    np.testing.assert_array_equal(observation["observation.state"].numpy(), lr_state(1, 5, 61)[indices])
    torch.manual_seed(0)
    action = post(policy.select_action(pre(observation)))
    assert action.shape == (1, 23) and torch.isfinite(action).all()
