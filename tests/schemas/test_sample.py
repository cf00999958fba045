"""Sample schema v1: keys, members, progress/weight formula, the per-sample checks and the json member."""

import json

import numpy as np
import pytest

from schemas.sample import (
    JSON_MEMBER,
    SampleJsonError,
    SampleMeta,
    json_problems,
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


def _as_preprocess_wrote_it(i: int, length: int, alpha: float, skill) -> dict:
    """The json dict b1k-preprocess built before `SampleMeta` (preprocess/episode.py, 2026-12)."""
    p = progress(i, length)
    return {
        "episode_index": 60020,
        "frame_index": i,
        "episode_length": length,
        "timestamp": float(i / 30.0),
        "progress": float(p),
        "weight": float(temporal_weight(p, alpha)),
        "task_index": 6,
        "task": "hide the Easter eggs",
        "skill": skill,
    }


@pytest.mark.parametrize(
    "i, length, skill", [(0, 7, None), (1, 7, "pick up egg"), (6, 7, "place"), (0, 1, None)]
)
def test_sample_meta_writes_the_json_member_byte_for_byte_as_before(i, length, skill):
    from shards.codec import encode_sample

    p = progress(i, length)
    meta = SampleMeta(
        episode_index=60020,
        frame_index=i,
        episode_length=length,
        timestamp=float(i / 30.0),
        progress=float(p),
        weight=float(temporal_weight(p, 2.0)),
        task_index=6,
        task="hide the Easter eggs",
        skill=skill,
    )
    arrays = (np.zeros(4, np.float32), np.zeros((2, 23), np.float32), np.zeros(2, bool))
    written = encode_sample("e00060020_f000001", {}, *arrays, meta.to_json())[JSON_MEMBER]
    before = encode_sample("e00060020_f000001", {}, *arrays, _as_preprocess_wrote_it(i, length, 2.0, skill))
    assert written == before[JSON_MEMBER]
    assert SampleMeta.from_json(json.loads(written)) == meta


def test_sample_meta_reads_a_set_written_before_skills_and_refuses_what_sample_problems_refuses():
    older = _as_preprocess_wrote_it(3, 7, 2.0, None)
    del older["skill"]
    assert SampleMeta.from_json(older).skill is None and not SampleMeta.from_json(older).skill_recorded
    assert SampleMeta.from_json(older).to_json() == older  # written back as it was
    broken = {**older, "progress": "0.5", "skill": 3}
    del broken["task"]
    with pytest.raises(SampleJsonError) as info:
        SampleMeta.from_json(broken)
    assert str(info.value) == (
        "json: field 'progress' has type str; json: missing field 'task'; json: field 'skill' has type int"
    )
    assert json_problems(broken) == str(info.value).split("; ")
    with pytest.raises(SampleJsonError, match="missing or invalid member json"):
        SampleMeta.from_json([])
