"""State presets: top32 is exactly BEHAVIOR.md's list in ascending order; custom lists parse and validate."""

import pytest

from schemas.presets import (
    STANDARD_INDICES,
    TOP32_INDICES,
    StateSelectionError,
    parse_state_indices,
    preset_indices,
    resolve_state_selection,
)
from schemas.r1pro import LAYOUT_2025, LAYOUT_2026, standard_track_allowed

BEHAVIOR_TOP32 = [
    *range(158, 165),
    179,
    180,
    186,
    187,
    188,
    193,
    194,
    *range(197, 204),
    218,
    219,
    225,
    226,
    227,
    232,
    233,
    236,
    237,
    238,
    239,
]


def test_top32_is_behavior_list_in_ascending_order():
    assert list(TOP32_INDICES) == BEHAVIOR_TOP32
    assert len(TOP32_INDICES) == 32
    assert list(TOP32_INDICES) == sorted(TOP32_INDICES)


def test_top32_names_follow_the_state_layout():
    selection = resolve_state_selection("top32")
    assert selection.names[0] == "arm_left_qpos_0"
    assert selection.names[7:9] == ("arm_left_qvel_0", "arm_left_qvel_1")
    assert selection.names[-4:] == ("trunk_qpos_0", "trunk_qpos_1", "trunk_qpos_2", "trunk_qpos_3")
    assert selection.not_standard_track == ()


def test_standard_preset_is_every_allowed_dim():
    forbidden = {*range(0, 6), *range(28, 34), *range(56, 62), *range(140, 152), *range(244, 253)}
    assert set(STANDARD_INDICES) == set(range(256)) - forbidden
    assert all(standard_track_allowed(i) for i in STANDARD_INDICES)


def test_custom_ranges_parse_in_the_given_order():
    assert parse_state_indices("158:161, 179,140") == (158, 159, 160, 179, 140)
    selection = resolve_state_selection("top32", "140:143,158")
    assert selection.preset == "custom"
    assert selection.names == ("robot_pos_0", "robot_pos_1", "robot_pos_2", "arm_left_qpos_0")
    assert selection.not_standard_track == (140, 141, 142)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("300", "outside 0..255"),
        ("165:158", "empty range"),
        ("1,x", "cannot parse 'x'"),
        ("3,3", "repeats [3]"),
        (",", "selects no dims"),
    ],
)
def test_bad_custom_lists_say_what_is_wrong(text, message):
    with pytest.raises(StateSelectionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_state_indices(text)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(StateSelectionError, match=r"unknown state preset 'top64'.*standard.*top32"):
        resolve_state_selection("top64")


# BEHAVIOR.md, "The 2026 release": the same 32 quantities on the 61-dim layout.
BEHAVIOR_TOP32_2026 = [
    *range(3, 10),
    10,
    11,
    *range(17, 20),
    24,
    25,
    *range(28, 35),
    35,
    36,
    *range(42, 45),
    49,
    50,
]
BEHAVIOR_TOP32_2026 += [*range(53, 57)]


def test_top32_on_the_2026_layout_is_behaviors_list_and_the_same_quantities():
    assert list(preset_indices("top32", LAYOUT_2026)) == BEHAVIOR_TOP32_2026
    on_2025 = resolve_state_selection("top32", layout=LAYOUT_2025)
    on_2026 = resolve_state_selection("top32", layout=LAYOUT_2026)
    assert on_2026.names == on_2025.names
    assert on_2026.layout is LAYOUT_2026 and on_2026.not_standard_track == ()


def test_standard_on_the_2026_layout_is_every_dim():
    assert preset_indices("standard", LAYOUT_2026) == tuple(range(61))


def test_custom_indices_are_checked_against_the_layouts_size():
    assert resolve_state_selection(indices="53:57,0", layout=LAYOUT_2026).names == (
        "trunk_qpos_0", "trunk_qpos_1", "trunk_qpos_2", "trunk_qpos_3", "base_qvel_0",
    )  # fmt: skip
    with pytest.raises(StateSelectionError, match=r"\[158\] outside 0..60 \(state layout r1pro-2026"):
        parse_state_indices("158", LAYOUT_2026)
