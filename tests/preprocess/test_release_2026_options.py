"""b1k-preprocess on the 2026 release as users download it: task chunks missing from disk are a partial
download (logged, left out), not an error, unless asked for; `--tasks` picks tasks by name or evaluator
id; `--prompt` picks instruction or name; the run says what it will cost before it starts."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from demo.synthetic import SyntheticConfig, build_dataset
from preprocess.estimate import CostEstimate, check_room
from preprocess.plan import PreprocessError
from tests.preprocess.helpers import preprocess, read_set


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    """A published-layout dataset of tasks 0, 6 and 51 (two episodes each)."""
    config = SyntheticConfig(
        release="2026", layout="published", tasks=(0, 0, 6, 6, 51, 51), lengths=(9, 8, 10, 8, 9, 8),
        head_size=64, wrist_size=64, depth=False,
    )  # fmt: skip
    return build_dataset(tmp_path_factory.mktemp("options-2026") / "ds", config)


def copy_without_task(info, task_id: int, dest: Path) -> Path:
    """The dataset as a user has it after downloading all but one task's chunks (meta/ unchanged)."""
    shutil.copytree(info.root, dest)
    for chunk in dest.glob(f"**/chunk-{task_id:03d}"):
        if "meta" not in chunk.parts:
            shutil.rmtree(chunk)
    return dest


def test_chunks_absent_from_disk_are_logged_and_left_out(download, tmp_path, caplog):
    root = copy_without_task(download, 51, tmp_path / "partial")
    with caplog.at_level(logging.INFO):
        manifest = preprocess(root, tmp_path / "set", horizon=4)
    assert sorted(int(k) for k in manifest["tasks"]) == [0, 6]
    assert manifest["totals"]["episodes"] == 4
    assert "task 51 cook_a_brisket" not in caplog.text.split("have no episodes on disk")[0]
    assert "2 listed episodes not downloaded" not in caplog.text  # 51's are all absent: a task not found
    assert "task 6 hiding_Easter_eggs: 2 episodes, 18 frames" in caplog.text
    assert "98 tasks described by meta/ have no episodes on disk" in caplog.text


def test_asking_for_an_episode_not_on_disk_is_an_error_naming_it(download, tmp_path):
    root = copy_without_task(download, 51, tmp_path / "partial")
    with pytest.raises(PreprocessError, match=r"--episodes \[10200\]: listed in .* not on disk"):
        preprocess(root, tmp_path / "set", episodes="0,10200")


def test_a_listed_episode_on_disk_with_a_broken_video_fails(download, tmp_path):
    root = copy_without_task(download, 99, tmp_path / "broken")  # nothing removed
    for video in root.glob("videos/observation.rgb.zed_link_camera_0/chunk-006/*.mp4"):
        video.write_bytes(video.read_bytes()[:200])
    with pytest.raises(Exception, match="chunk-006"):
        preprocess(root, tmp_path / "set", horizon=4, tasks="hiding_Easter_eggs")


def test_tasks_by_name_or_evaluator_id_and_the_prompt_choice(download, tmp_path):
    manifest = preprocess(
        download.root, tmp_path / "set", horizon=4, tasks="hiding_Easter_eggs,51", prompt="name"
    )
    assert manifest["tasks"] == {"6": "hiding_Easter_eggs", "51": "cook_a_brisket"}
    assert manifest["prompt"] == "name"
    assert manifest["task_details"]["6"]["instruction"] != "hiding_Easter_eggs"
    _, splits = read_set(tmp_path / "set")
    assert {s["json"]["task"] for s in splits["train"].values()} == {"hiding_Easter_eggs", "cook_a_brisket"}
    with pytest.raises(PreprocessError, match="no episode of task 49 make_pizza is on disk"):
        preprocess(
            download.root, tmp_path / "other", tasks="make_pizza"
        )  # described by meta/, not downloaded
    with pytest.raises(PreprocessError, match="--tasks 'make_pie': no such task"):
        preprocess(download.root, tmp_path / "other", tasks="make_pie")


def test_the_projected_size_is_logged_and_close_to_what_is_written(download, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        manifest = preprocess(download.root, tmp_path / "set", horizon=4, tasks="0")
    line = next(r.message for r in caplog.records if r.message.startswith("projected shard set"))
    per_sample_kb = float(line.split(" x ")[1].split(" kB")[0])
    actual = manifest["totals"]["bytes"] / manifest["totals"]["samples"] / 1e3
    assert per_sample_kb == pytest.approx(actual, rel=0.15)


def test_a_filesystem_without_room_stops_the_run_before_it_starts_unless_told(tmp_path):
    too_big = CostEstimate(episodes=1, frames=10**9, samples=10**9, bytes_per_sample=10**9)
    with pytest.raises(PreprocessError, match="--ignore-free-space"):
        check_room(too_big, tmp_path / "out", already_written=0, ignore=False)
    check_room(too_big, tmp_path / "out", already_written=0, ignore=True)
