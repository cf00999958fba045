"""R1Pro layouts match BEHAVIOR.md: contiguous segments covering 256 state and 23 action dims."""

import itertools

import pytest

from schemas.r1pro import (
    ACTION_DIM,
    ACTION_SEGMENTS,
    CAMERAS,
    LAYOUT_2025,
    LAYOUT_2026,
    STATE_DIM,
    STATE_SEGMENTS,
    LayoutError,
    action_names,
    camera_for_key,
    detect_layout,
    dim_name,
    layout_named,
    standard_track_allowed,
)


def test_segments_tile_the_vectors_without_gaps():
    for segments, dim in ((STATE_SEGMENTS, STATE_DIM), (ACTION_SEGMENTS, ACTION_DIM)):
        assert segments[0].start == 0
        assert segments[-1].stop == dim
        for before, after in itertools.pairwise(segments):
            assert before.stop == after.start


def test_standard_track_rules():
    assert not standard_track_allowed(0)  # base joints in joint_qpos
    assert standard_track_allowed(6)
    assert not standard_track_allowed(28 + 5) and standard_track_allowed(28 + 6)
    assert not standard_track_allowed(140)  # global position
    assert not standard_track_allowed(151)
    assert standard_track_allowed(152)
    assert not standard_track_allowed(244) and not standard_track_allowed(252)
    assert standard_track_allowed(253)


def test_names():
    assert dim_name(149) == "robot_2d_ori"
    assert dim_name(161) == "arm_left_qpos_3"
    assert action_names()[14] == "left_gripper"
    assert action_names()[22] == "right_gripper"
    assert len(action_names()) == 23


def test_cameras_are_the_three_rgb_streams():
    assert [(c.name, c.video_key, c.height) for c in CAMERAS] == [
        ("head", "observation.images.rgb.head", 720),
        ("left_wrist", "observation.images.rgb.left_wrist", 480),
        ("right_wrist", "observation.images.rgb.right_wrist", 480),
    ]
    # Policies see the dataset's own keys; checkpoints written before 2026-12 used the short ones.
    assert CAMERAS[0].policy_key == "observation.images.rgb.head"
    assert CAMERAS[0].legacy_key == "observation.images.head"


def test_a_feature_key_names_its_camera_in_either_spelling():
    assert camera_for_key("observation.images.rgb.left_wrist").name == "left_wrist"
    assert camera_for_key("observation.images.left_wrist").name == "left_wrist"
    with pytest.raises(LayoutError, match=r"'observation.images.top' is none of the R1Pro cameras"):
        camera_for_key("observation.images.top")


def test_the_2026_layout_tiles_61_dims_with_the_evaluators_slices():
    segments = LAYOUT_2026.segments
    assert segments[0].start == 0 and LAYOUT_2026.dim == 61
    for before, after in itertools.pairwise(segments):
        assert before.stop == after.start
    assert (LAYOUT_2026.segment("trunk_qpos").start, LAYOUT_2026.segment("trunk_qpos").stop) == (53, 57)
    assert LAYOUT_2026.names([0, 3, 60]) == ["base_qvel_0", "arm_left_qpos_0", "trunk_qvel_3"]
    assert all(LAYOUT_2026.allowed(i) for i in range(61))


def test_layouts_are_detected_by_dim_and_by_names():
    assert detect_layout(256) is LAYOUT_2025
    assert detect_layout(61, None) is LAYOUT_2026
    assert detect_layout(61, LAYOUT_2026.names(range(61))) is LAYOUT_2026
    assert detect_layout(61, {"axes": LAYOUT_2026.names(range(61))}) is LAYOUT_2026
    assert layout_named("r1pro-2026") is LAYOUT_2026


def test_an_unknown_state_width_names_the_known_layouts():
    with pytest.raises(LayoutError, match=r"a 64-dim state.*r1pro-2025 \(256 dims.*r1pro-2026 \(61 dims"):
        detect_layout(64)
    with pytest.raises(LayoutError, match=r"unknown state layout 'r1pro-2024'; known layouts: r1pro-2025"):
        layout_named("r1pro-2024")
