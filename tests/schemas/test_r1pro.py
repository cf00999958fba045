"""R1Pro layouts match BEHAVIOR.md: contiguous segments covering 256 state and 23 action dims."""

import itertools

from schemas.r1pro import (
    ACTION_DIM,
    ACTION_SEGMENTS,
    CAMERAS,
    STATE_DIM,
    STATE_SEGMENTS,
    action_names,
    dim_name,
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
    assert CAMERAS[0].policy_key == "observation.images.head"
