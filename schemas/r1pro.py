"""R1Pro robot layouts as recorded in the BEHAVIOR Challenge data (see shared/BEHAVIOR.md).

The proprioceptive state differs between releases: 256 dims in 2025, 61 in 2026. Each is a
`StateLayout` (named slices with their standard-track flags), kept as data so that presets can be
defined by slice names and mean the same quantities on every release. The action (23 dims) is the
same in both; the three RGB cameras are the same cameras under other video keys (`CAMERAS_BY_RELEASE`).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.errors import B1kError

# The feature keys a dataset, the trainer's batches and a checkpoint share (lerobot's names), defined
# here once: the state, the action, and the action chunk's padding mask (True past the episode's end).
STATE_KEY = "observation.state"
ACTION_KEY = "action"
PAD_KEY = "action_is_pad"
STATE_DIM = 256  # the 2025 layout; the 2026 layout has 61 (`StateLayout.dim`)
ACTION_DIM = 23
FPS = 30


@dataclass(frozen=True)
class Segment:
    """A named slice [start, stop) of a vector; `standard_allowed` gives, per dim, the standard-track rule."""

    name: str
    start: int
    stop: int
    forbidden_prefix: int = 0  # the first N dims of the slice are not allowed in the standard track
    forbidden: bool = False  # the whole slice is not allowed in the standard track

    @property
    def size(self) -> int:
        return self.stop - self.start

    def allowed(self, index: int) -> bool:
        """Whether absolute index `index` (inside this segment) may be used in the standard track."""
        if self.forbidden:
            return False
        return index - self.start >= self.forbidden_prefix


ACTION_SEGMENTS: tuple[Segment, ...] = (
    Segment("base", 0, 3),
    Segment("torso", 3, 7),
    Segment("left_arm", 7, 14),
    Segment("left_gripper", 14, 15),
    Segment("right_arm", 15, 22),
    Segment("right_gripper", 22, 23),
)

# The action groups `b1k-train --action-repr relative` trains as offsets from the current state (joint
# positions: the state's aligned dims, `schemas.presets.ALIGNED_PARTS`); base velocity and grippers stay
# absolute. Recorded in every checkpoint, so a change here changes only new runs.
RELATIVE_ACTION_GROUPS: tuple[str, ...] = ("torso", "left_arm", "right_arm")


def action_group_dims(groups: tuple[str, ...] | list[str]) -> tuple[int, ...]:
    """The action dims of the named groups (`ACTION_SEGMENTS`), ascending."""
    known = {s.name: s for s in ACTION_SEGMENTS}
    unknown = [g for g in groups if g not in known]
    if unknown:
        raise ValueError(f"unknown action groups {unknown}; expected some of {list(known)}")
    return tuple(sorted(i for g in set(groups) for i in range(known[g].start, known[g].stop)))


STATE_SEGMENTS: tuple[Segment, ...] = (
    Segment("joint_qpos", 0, 28, forbidden_prefix=6),
    Segment("joint_qpos_sin", 28, 56, forbidden_prefix=6),
    Segment("joint_qpos_cos", 56, 84, forbidden_prefix=6),
    Segment("joint_qvel", 84, 112),
    Segment("joint_qeffort", 112, 140),
    Segment("robot_pos", 140, 143, forbidden=True),
    Segment("robot_ori_cos", 143, 146, forbidden=True),
    Segment("robot_ori_sin", 146, 149, forbidden=True),
    Segment("robot_2d_ori", 149, 150, forbidden=True),
    Segment("robot_2d_ori_cos", 150, 151, forbidden=True),
    Segment("robot_2d_ori_sin", 151, 152, forbidden=True),
    Segment("robot_lin_vel", 152, 155),
    Segment("robot_ang_vel", 155, 158),
    Segment("arm_left_qpos", 158, 165),
    Segment("arm_left_qpos_sin", 165, 172),
    Segment("arm_left_qpos_cos", 172, 179),
    Segment("arm_left_qvel", 179, 186),
    Segment("eef_left_pos", 186, 189),
    Segment("eef_left_quat", 189, 193),
    Segment("gripper_left_qpos", 193, 195),
    Segment("gripper_left_qvel", 195, 197),
    Segment("arm_right_qpos", 197, 204),
    Segment("arm_right_qpos_sin", 204, 211),
    Segment("arm_right_qpos_cos", 211, 218),
    Segment("arm_right_qvel", 218, 225),
    Segment("eef_right_pos", 225, 228),
    Segment("eef_right_quat", 228, 232),
    Segment("gripper_right_qpos", 232, 234),
    Segment("gripper_right_qvel", 234, 236),
    Segment("trunk_qpos", 236, 240),
    Segment("trunk_qvel", 240, 244),
    Segment("base_qpos", 244, 247, forbidden=True),
    Segment("base_qpos_sin", 247, 250, forbidden=True),
    Segment("base_qpos_cos", 250, 253, forbidden=True),
    Segment("base_qvel", 253, 256),
)

# The 2026 release's 61-dim state (its evaluator's PROPRIOCEPTION_INDICES["R1Pro"]). It has no
# base-pose slices; every dim is allowed until the 2026 track rules say otherwise (one edit here).
STATE_SEGMENTS_2026: tuple[Segment, ...] = (
    Segment("base_qvel", 0, 3),
    Segment("arm_left_qpos", 3, 10),
    Segment("arm_left_qvel", 10, 17),
    Segment("eef_left_pos", 17, 20),
    Segment("eef_left_quat", 20, 24),
    Segment("gripper_left_qpos", 24, 26),
    Segment("gripper_left_qvel", 26, 28),
    Segment("arm_right_qpos", 28, 35),
    Segment("arm_right_qvel", 35, 42),
    Segment("eef_right_pos", 42, 45),
    Segment("eef_right_quat", 45, 49),
    Segment("gripper_right_qpos", 49, 51),
    Segment("gripper_right_qvel", 51, 53),
    Segment("trunk_qpos", 53, 57),
    Segment("trunk_qvel", 57, 61),
)


class LayoutError(B1kError, ValueError):
    """A state vector matches no known R1Pro layout, or a slice/index is not in a layout."""


@dataclass(frozen=True)
class StateLayout:
    """One release's `observation.state`: named slices tiling `dim` dims, with standard-track flags."""

    name: str  # recorded in manifests and checkpoints, e.g. "r1pro-2025"
    release: str  # the BEHAVIOR Challenge release that records it
    segments: tuple[Segment, ...]

    @property
    def dim(self) -> int:
        return self.segments[-1].stop

    def segment(self, name: str) -> Segment:
        for segment in self.segments:
            if segment.name == name:
                return segment
        raise LayoutError(f"state layout {self.name} has no slice {name!r}")

    def names(self, indices: list[int] | tuple[int, ...]) -> list[str]:
        return [dim_name(i, self.segments) for i in indices]

    def allowed(self, index: int) -> bool:
        """Whether state index `index` may be used in the BEHAVIOR Challenge standard track."""
        return segment_of(index, self.segments).allowed(index)

    def describe(self) -> str:
        return f"{self.name} ({self.dim} dims, the {self.release} release)"


LAYOUT_2025 = StateLayout("r1pro-2025", "2025", STATE_SEGMENTS)
LAYOUT_2026 = StateLayout("r1pro-2026", "2026", STATE_SEGMENTS_2026)
LAYOUTS: dict[str, StateLayout] = {layout.name: layout for layout in (LAYOUT_2025, LAYOUT_2026)}
DEFAULT_LAYOUT = LAYOUT_2025  # what manifests and checkpoints written before layouts were recorded hold


def known_layouts() -> str:
    return ", ".join(layout.describe() for layout in LAYOUTS.values())


def layout_named(name: str) -> StateLayout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise LayoutError(f"unknown state layout {name!r}; known layouts: {known_layouts()}") from None


def _flat_names(names: object) -> list[str] | None:
    """info.json `names` as a flat list of strings (LeRobot writes a list, or {"axis": [...]})."""
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return names
    return None


def detect_layout(dim: int, names: object = None) -> StateLayout:
    """The layout of a dataset's state from its dim and, when info.json gives them, its dim names.

    Names win when they equal a layout's own (`arm_left_qpos_0`, ...); otherwise the dim decides.
    A dim no layout has is an error naming the layouts known."""
    flat = _flat_names(names)
    if flat is not None:
        for layout in LAYOUTS.values():
            if flat == layout.names(range(layout.dim)):
                return layout
    for layout in LAYOUTS.values():
        if layout.dim == dim:
            return layout
    raise LayoutError(f"a {dim}-dim state matches no known R1Pro layout; known layouts: {known_layouts()}")


@dataclass(frozen=True)
class Camera:
    name: str  # short name used in shard members (`<name>.jpg`) and policy keys
    video_key: str  # feature key in the LeRobot dataset
    height: int  # native size in the BEHAVIOR release
    width: int

    @property
    def policy_key(self) -> str:
        """The feature key a policy sees for this camera: the dataset's own (what every lerobot tool uses)."""
        return self.video_key

    @property
    def legacy_key(self) -> str:
        """The key checkpoints written before 2026-12 used (`observation.images.head`); still served."""
        return f"observation.images.{self.name}"


# Each release's RGB video keys (BEHAVIOR.md, "Cameras" and "The 2026 release, as published"); the
# short names are the shard members (`head.jpg`) and are the same in both.
CAMERAS_2025: tuple[Camera, ...] = (
    Camera("head", "observation.images.rgb.head", 720, 720),
    Camera("left_wrist", "observation.images.rgb.left_wrist", 480, 480),
    Camera("right_wrist", "observation.images.rgb.right_wrist", 480, 480),
)
CAMERAS_2026: tuple[Camera, ...] = (
    Camera("head", "observation.rgb.zed_link_camera_0", 720, 720),
    Camera("left_wrist", "observation.rgb.left_realsense_link_camera_0", 480, 480),
    Camera("right_wrist", "observation.rgb.right_realsense_link_camera_0", 480, 480),
)
CAMERAS_BY_RELEASE: dict[str, tuple[Camera, ...]] = {"2025": CAMERAS_2025, "2026": CAMERAS_2026}
CAMERAS = CAMERAS_2025  # the 2025 keys: what sets and checkpoints written before releases were recorded use


def cameras_for_features(features: dict, release: str | None = None) -> tuple[Camera, ...] | None:
    """The camera set whose three RGB video keys are all in a dataset's `features`: `release`'s when it
    has them all, else the other release's; None when no release's set is complete."""
    order = [release] if release in CAMERAS_BY_RELEASE else []
    order += [name for name in CAMERAS_BY_RELEASE if name not in order]
    for name in order:
        cameras = CAMERAS_BY_RELEASE[name]
        if all(camera.video_key in features for camera in cameras):
            return cameras
    return None


def segment_of(index: int, segments: tuple[Segment, ...] = STATE_SEGMENTS) -> Segment:
    for segment in segments:
        if segment.start <= index < segment.stop:
            return segment
    raise IndexError(f"index {index} is outside the layout (0..{segments[-1].stop - 1})")


def dim_name(index: int, segments: tuple[Segment, ...] = STATE_SEGMENTS) -> str:
    """`arm_left_qpos_3` for state index 161; single-dim segments keep their bare name."""
    segment = segment_of(index, segments)
    return segment.name if segment.size == 1 else f"{segment.name}_{index - segment.start}"


def camera_for_key(key: str) -> Camera:
    """The camera a policy feature key names: the dataset's key, or the legacy short one."""
    for cameras in CAMERAS_BY_RELEASE.values():
        for camera in cameras:
            if key in (camera.video_key, camera.legacy_key):
                return camera
    known = ", ".join(c.video_key for cameras in CAMERAS_BY_RELEASE.values() for c in cameras)
    raise LayoutError(f"image feature {key!r} is none of the R1Pro cameras ({known})")


def state_names(indices: list[int] | tuple[int, ...], layout: StateLayout | None = None) -> list[str]:
    return (layout or DEFAULT_LAYOUT).names(indices)


def action_names() -> list[str]:
    return [dim_name(i, ACTION_SEGMENTS) for i in range(ACTION_DIM)]


def standard_track_allowed(index: int, layout: StateLayout | None = None) -> bool:
    """Whether state index `index` may be used in the BEHAVIOR Challenge standard track."""
    return (layout or DEFAULT_LAYOUT).allowed(index)
