"""The 2026 release as users download it, end to end (issue 24's acceptance):

* a partial download of the published layout (three task chunks of the one 100-task dataset; meta/
  describing all 100 tasks; HEVC; skill annotations with the real files' quirks) preprocesses with
  default options: states at the 2026 top32 indices and action chunks exact, `task_index` the
  evaluator's id, `task` the instruction, `skill` the annotated skill;
* trained on it, the checkpoint's image features are the dataset's keys and its task table holds exactly
  the three evaluator ids; `b1k-serve` acts for each and refuses a fourth with an error frame;
* two older per-task copies (episodes from 0, task numbered 0 in each) preprocess, merge with every
  sample kept, train, and the checkpoint knows both tasks by their evaluator ids.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from demo.synthetic import SyntheticConfig, build_dataset
from schemas.presets import preset_indices
from schemas.r1pro import CAMERAS_2026, LAYOUT_2026
from schemas.sample import parse_sample_key
from tests.deploy.evaluator_client import EvaluatorClient, observation
from tests.deploy.helpers import chunk_model, provenance
from tests.preprocess.helpers import expected_chunk, preprocess, read_set

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TASK_IDS = (0, 6, 51)  # turning_on_radio, hiding_Easter_eggs, cook_a_brisket
HORIZON = 8
TOP32 = list(preset_indices("top32", LAYOUT_2026))


def train(shards: list[Path], backbone: Path, out: Path) -> Path:
    from train import cli

    args = [a for s in shards for a in ("--shards", s)]
    args += [
        "--vlm-model", backbone, "--output-dir", out, "--batch-size", 2, "--chunk-size", 6, "--max-steps", 2,
        "--num-workers", 0, "--val-every", 0, "--no-progress",
    ]  # fmt: skip
    result = CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output[-3000:]
    return out / "checkpoints" / "last" / "pretrained_model"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """(synthetic info, shard set) of a three-task partial download, the last episode held out."""
    root = tmp_path_factory.mktemp("published-2026")
    config = SyntheticConfig(
        release="2026", layout="published", tasks=(0, 0, 6, 6, 51, 51), lengths=(14, 12, 16, 10, 12, 14),
        head_size=64, wrist_size=64,
    )  # fmt: skip
    info = build_dataset(root / "ds", config)
    val = info.episodes[-1].episode_index
    preprocess(info.root, root / "set", horizon=HORIZON, val_episodes=str(val))
    return info, root / "set"


def test_a_partial_download_reads_exactly_with_evaluator_ids_instructions_and_skills(published):
    info, shards = published
    manifest, splits = read_set(shards)
    assert {int(k) for k in manifest["tasks"]} == set(TASK_IDS)  # not the 100 tasks meta/ describes
    assert manifest["state"]["layout"] == "r1pro-2026" and manifest["state"]["indices"] == TOP32
    assert {c["video_key"] for c in manifest["cameras"].values()} == {c.video_key for c in CAMERAS_2026}
    by_index = {ep.episode_index: ep for ep in info.episodes}
    annotations = info.annotations
    skills_seen = set()
    for samples in splits.values():
        for key, sample in samples.items():
            episode, frame = parse_sample_key(key)
            ep = by_index[episode]
            np.testing.assert_array_equal(sample["state.npy"], ep.states()[frame, TOP32])
            chunk, pad = expected_chunk(ep.actions(), frame, HORIZON)
            np.testing.assert_array_equal(sample["action.npy"], chunk)
            np.testing.assert_array_equal(sample["action_is_pad.npy"], pad)
            meta = sample["json"]
            assert meta["task_index"] == ep.task_id and meta["task"] == ep.instruction != ep.task
            assert meta["skill"] == annotations[episode].per_frame[frame]
            skills_seen.add(meta["skill"])
    assert None in skills_seen and len(skills_seen) > 2  # annotated frames, and frames with none
    assert manifest["prompt"] == "instruction"
    assert {int(k): d["name"] for k, d in manifest["task_details"].items()} == {
        ep.task_id: ep.task for ep in info.episodes
    }
    quirks = manifest["annotations"]
    assert quirks["missing"] >= 1 and quirks["nested"] >= 1 and quirks["empty"] >= 1 and quirks["null"] >= 1


@pytest.fixture(scope="module")
def published_checkpoint(published, tiny_backbone, tmp_path_factory) -> Path:
    _, shards = published
    return train([shards], tiny_backbone, tmp_path_factory.mktemp("published-run"))


def test_the_checkpoint_knows_the_dataset_keys_and_the_three_tasks_and_serving_refuses_a_fourth(
    published, published_checkpoint
):
    info, _ = published
    config = json.loads((published_checkpoint / "config.json").read_text())
    image_keys = {k for k, f in config["input_features"].items() if f["type"] == "VISUAL"}
    assert image_keys == {c.video_key for c in CAMERAS_2026}
    tasks = provenance(published_checkpoint)["tasks"]
    assert {int(k): v for k, v in tasks.items()} == {ep.task_id: ep.instruction for ep in info.episodes}

    from tests.deploy.test_server import serve

    with (
        serve(chunk_model(published_checkpoint)) as thread,
        EvaluatorClient("127.0.0.1", thread.port) as client,
    ):
        for task_id in TASK_IDS:
            reply = client.infer(observation(task_id, proprio_dim=61, task_id=task_id))
            assert reply["action"].shape == (23,)
        with pytest.raises(RuntimeError, match="Error in inference server") as refused:
            client.infer(observation(3, proprio_dim=61, task_id=1))
        assert "1" in str(refused.value) and "turning_on_radio" in str(refused.value)


@pytest.fixture(scope="module")
def per_task_sets(tmp_path_factory):
    """Two per-task copies (task 6 and task 0, each numbering its episodes from 0 and its task 0),
    each preprocessed on its own."""
    root = tmp_path_factory.mktemp("per-task-2026")
    sets = []
    for task_id in (6, 0):
        config = SyntheticConfig(
            release="2026", layout="per-task", tasks=(task_id,) * 3, lengths=(10, 12, 9), head_size=64, wrist_size=64
        )  # fmt: skip
        info = build_dataset(root / f"ds-{task_id}", config)
        assert [ep.episode_index for ep in info.episodes] == [0, 1, 2]
        preprocess(info.root, root / f"set-{task_id}", horizon=HORIZON, val_episodes="2")
        sets.append((info, root / f"set-{task_id}"))
    return sets


def test_per_task_copies_merge_keeping_every_sample_and_train_into_both_evaluator_ids(
    per_task_sets, tiny_backbone, tmp_path
):
    from shards.cli import main as shards_cli

    for info, shards in per_task_sets:
        manifest, _ = read_set(shards)
        task_id = info.episodes[0].task_id
        assert list(manifest["tasks"]) == [str(task_id)]
        assert manifest["splits"]["val"]["episodes"] == [200 * task_id + 2]  # the published global index
    merged = tmp_path / "merged"
    result = CliRunner().invoke(shards_cli, ["merge", str(merged), *(str(s) for _, s in per_task_sets)])
    assert result.exit_code == 0, result.output
    manifest, splits = read_set(merged, decode=False)
    assert sum(len(s) for s in splits.values()) == sum(
        ep.length for info, _ in per_task_sets for ep in info.episodes
    )
    assert sorted(manifest["splits"]["train"]["episodes"]) == [0, 1, 1200, 1201]
    checkpoint = train([merged], tiny_backbone, tmp_path / "run")
    assert sorted(int(k) for k in provenance(checkpoint)["tasks"]) == [0, 6]


def test_b1k_eval_on_the_val_split_reports_the_action_error_per_annotated_skill(
    published, published_checkpoint, tmp_path
):
    from deploy.eval.cli import main as eval_cli

    info, shards = published
    args = ["--checkpoint", published_checkpoint, "--shards", shards, "--out", tmp_path, "--device", "cpu"]
    result = CliRunner().invoke(eval_cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    val = info.episodes[-1]
    expected: dict[str | None, int] = {}
    for skill in info.annotations[val.episode_index].per_frame:
        expected[skill] = expected.get(skill, 0) + 1
    for row in (report["checkpoints"][0], report["baseline"]):
        assert {s["skill"]: s["frames"] for s in row["by_skill"]} == expected
        assert all(np.isfinite(s["mae"]) for s in row["by_skill"])
    assert "by skill" in result.output
