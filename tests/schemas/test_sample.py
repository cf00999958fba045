"""Sample schema v1: keys, members, progress/weight formula and the per-sample checks."""

import numpy as np
import pytest

from schemas.sample import (
    member_names,
    parse_sample_key,
    progress,
    sample_key,
    sample_problems,
    temporal_weight,
)


def test_key_round_trip():
    assert sample_key(60010, 7) == "e00060010_f000007"
    assert parse_sample_key("e00060010_f000007") == (60010, 7)
    with pytest.raises(ValueError, match="does not match"):
        parse_sample_key("ep60010_7")


def test_progress_and_weight():
    assert progress(0, 5) == 0.0
    assert progress(4, 5) == 1.0
    assert progress(0, 1) == 0.0
    np.testing.assert_allclose(
        temporal_weight(progress(np.arange(5), 5), 2.0), 1 + 2.0 * (np.arange(5) / 4) ** 2
    )
    assert temporal_weight(0.7, 0.0) == 1.0


def test_member_names():
    assert member_names(["head", "left_wrist"]) == [
        "head.jpg",
        "left_wrist.jpg",
        "state.npy",
        "action.npy",
        "action_is_pad.npy",
        "json",
    ]


def _sample() -> dict:
    return {
        "state.npy": np.zeros(4, np.float32),
        "action.npy": np.zeros((3, 23), np.float32),
        "action_is_pad.npy": np.zeros(3, np.bool_),
        "json": {
            "episode_index": 1,
            "frame_index": 0,
            "episode_length": 3,
            "timestamp": 0.0,
            "progress": 0.0,
            "weight": 1.0,
            "task_index": 0,
            "task": "pick",
        },
    }


def test_valid_sample_has_no_problems():
    assert sample_problems(_sample(), state_dim=4, action_dim=23, horizon=3) == []


def test_problems_name_member_and_expectation():
    sample = _sample()
    sample["action.npy"] = np.zeros((2, 23), np.float64)
    del sample["state.npy"]
    del sample["json"]["task"]
    problems = sample_problems(sample, state_dim=4, action_dim=23, horizon=3)
    assert "missing member state.npy" in problems
    assert "action.npy: expected float32[3, 23], got float64[2, 23]" in problems
    assert "json: missing field 'task'" in problems
