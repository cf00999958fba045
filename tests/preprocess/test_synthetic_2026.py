"""The synthetic builder's 2026 release: v3.0 only, a 61-dim state holding each quantity's 2025 code
by name, several tasks; lerobot opens it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from preprocess.synthetic import (
    RGB_KEYS,
    SyntheticConfig,
    decode_frame_id,
    decode_state_id,
    expected_state,
    expected_states,
    main,
)
from schemas.presets import TOP32_INDICES, preset_indices
from schemas.r1pro import LAYOUT_2025, LAYOUT_2026

# ---------------------------------------------------------------------------------------------
# the 2026 release: v3.0, a 61-dim state, several tasks
# ---------------------------------------------------------------------------------------------

TOP32_2026 = preset_indices("top32", LAYOUT_2026)


@pytest.fixture(scope="module")
def synthetic_2026(synthetic_dataset):
    """Two tasks, three episodes over two data files (a boundary inside the set)."""
    return synthetic_dataset(
        layout="v3.0",
        release="2026",
        lengths=(6, 9, 5),
        tasks=(6, 1),
        head_size=32,
        wrist_size=24,
        depth=False,
        episodes_per_data_file=2,
    )


def test_a_2026_state_holds_the_2025_code_of_each_quantity_by_name():
    for episode_index, frame in [(0, 0), (2, 49), (60010, 8999)]:
        state_2025 = expected_state(episode_index, frame)
        state = expected_state(episode_index, frame, LAYOUT_2026)
        assert state.dtype == np.float32 and state.shape == (61,) and len(np.unique(state)) == 61
        for d in range(61):
            name = LAYOUT_2026.names([d])[0]
            assert state[d] == state_2025[LAYOUT_2025.names(range(256)).index(name)], name
        # top32 is the same 32 values on both releases, so every reader's check carries over
        np.testing.assert_array_equal(state[list(TOP32_2026)], state_2025[list(TOP32_INDICES)])
        assert decode_state_id(state) == (episode_index, frame)
        assert decode_state_id(state[list(TOP32_2026)]) == (episode_index, frame)
        assert decode_state_id(state[list(TOP32_2026)], TOP32_2026, LAYOUT_2026) == (episode_index, frame)
    # the 2026 indices read as 2025 indices (a reader that ignores the layout) do not decode
    with pytest.raises(ValueError, match="disagree"):
        decode_state_id(expected_state(7, 3, LAYOUT_2026)[list(TOP32_2026)], TOP32_2026)


def test_2026_info_json_has_a_61_dim_state_with_null_names(synthetic_2026):
    info = json.loads((synthetic_2026.root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    features = info["features"]
    assert features["observation.state"] == {"dtype": "float32", "shape": [61], "names": None}
    assert features["action"]["shape"] == [23]
    assert [k for k in RGB_KEYS if features[k]["dtype"] == "video"] == list(RGB_KEYS)
    assert info["total_episodes"] == 3 and info["total_tasks"] == 2
    stats = json.loads((synthetic_2026.root / "meta" / "stats.json").read_text())
    assert len(stats["observation.state"]["mean"]) == 61


def test_2026_episodes_carry_two_tasks(synthetic_2026):
    root = synthetic_2026.root
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    assert tasks["task_index"].to_dict() == {"hiding_Easter_eggs": 0, "picking_up_trash": 1}
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["tasks"] for e in episodes] == [
        ["hiding_Easter_eggs"],
        ["picking_up_trash"],
        ["hiding_Easter_eggs"],
    ]
    assert synthetic_2026.tasks == {0: "hiding_Easter_eggs", 1: "picking_up_trash"}


def test_2026_parquet_state_decodes_at_the_2026_top32_indices(synthetic_2026):
    root = synthetic_2026.root
    assert sorted(f.name for f in (root / "data").rglob("*.parquet")) == [
        "file-000.parquet",
        "file-001.parquet",
    ]
    for episode in synthetic_2026.episodes:
        rows = pq.read_table(root / episode.data_file).to_pandas()
        rows = rows[rows["episode_index"] == episode.episode_index]
        state = np.stack(rows["observation.state"].to_numpy()).astype(np.float32)
        assert state.shape == (episode.length, 61)
        np.testing.assert_array_equal(
            state, expected_states(episode.episode_index, rows["frame_index"], LAYOUT_2026)
        )
        np.testing.assert_array_equal(state, episode.states())
        for frame, row in zip(rows["frame_index"], state[:, list(TOP32_2026)], strict=True):
            assert decode_state_id(row) == (episode.episode_index, frame)
        assert set(rows["task_index"]) == {episode.task_index}


def test_lerobot_opens_the_2026_dataset(synthetic_2026):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("local/synthetic-behavior-2026", root=synthetic_2026.root, video_backend="pyav")
    assert len(dataset) == synthetic_2026.total_frames
    last = synthetic_2026.episodes[-1]
    item = dataset[last.dataset_from_index + last.length - 1]
    np.testing.assert_array_equal(
        item["observation.state"].numpy(), expected_state(last.episode_index, last.length - 1, LAYOUT_2026)
    )
    assert item["task"] == last.task
    assert decode_frame_id(item[RGB_KEYS[0]].numpy()) == (last.episode_index, last.length - 1)


def test_the_2026_release_is_v30_only(tmp_path):
    with pytest.raises(ValueError, match=r"2026 release is LeRobot v3\.0 only"):
        SyntheticConfig(layout="v2.1", release="2026")
    with pytest.raises(ValueError, match="release must be one of"):
        SyntheticConfig(release="2027")
    result = CliRunner().invoke(
        main, ["--output-dir", str(tmp_path / "ds"), "--layout", "v2.1", "--release", "2026"]
    )
    assert result.exit_code != 0 and "v3.0 only" in result.output
    assert not (tmp_path / "ds" / "meta").exists()
    assert "--release [2025|2026]" in CliRunner().invoke(main, ["--help"]).output


# ---------------------------------------------------------------------------------------------
# builder API and command line
# ---------------------------------------------------------------------------------------------
