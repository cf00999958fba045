"""R1Pro robot layouts as recorded in the BEHAVIOR Challenge data (see shared/BEHAVIOR.md)."""

from __future__ import annotations

from dataclasses import dataclass

STATE_KEY = "observation.state"
ACTION_KEY = "action"
STATE_DIM = 256
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


@dataclass(frozen=True)
class Camera:
    name: str  # short name used in shard members (`<name>.jpg`) and policy keys
    video_key: str  # feature key in the LeRobot dataset
    height: int  # native size in the BEHAVIOR release
    width: int

    @property
    def policy_key(self) -> str:
        """The batch key SmolVLA sees for this camera."""
        return f"observation.images.{self.name}"


CAMERAS: tuple[Camera, ...] = (
    Camera("head", "observation.images.rgb.head", 720, 720),
    Camera("left_wrist", "observation.images.rgb.left_wrist", 480, 480),
    Camera("right_wrist", "observation.images.rgb.right_wrist", 480, 480),
)


def segment_of(index: int, segments: tuple[Segment, ...] = STATE_SEGMENTS) -> Segment:
    for segment in segments:
        if segment.start <= index < segment.stop:
            return segment
    raise IndexError(f"index {index} is outside the layout (0..{segments[-1].stop - 1})")


def dim_name(index: int, segments: tuple[Segment, ...] = STATE_SEGMENTS) -> str:
    """`arm_left_qpos_3` for state index 161; single-dim segments keep their bare name."""
    segment = segment_of(index, segments)
    return segment.name if segment.size == 1 else f"{segment.name}_{index - segment.start}"


def state_names(indices: list[int] | tuple[int, ...]) -> list[str]:
    return [dim_name(i, STATE_SEGMENTS) for i in indices]


def action_names() -> list[str]:
    return [dim_name(i, ACTION_SEGMENTS) for i in range(ACTION_DIM)]


def standard_track_allowed(index: int) -> bool:
    """Whether state index `index` may be used in the BEHAVIOR Challenge standard track."""
    return segment_of(index).allowed(index)
