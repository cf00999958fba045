"""State presets: which dims of an R1Pro state layout become the policy's state, and in what order.

A preset is defined by slice names (`schemas.r1pro.StateLayout`), so `top32` is the same 32
quantities on the 2025 (256-dim) and 2026 (61-dim) layouts; its indices are ascending on each.
`aligned` is ordered instead: its first 23 dims are the state quantities of the 23 action dims, in the
action's order (base velocity, trunk, left arm, one left gripper dim, right arm, one right gripper dim),
so that lerobot's relative-action steps, which subtract `state[:action_dim]`, subtract the right ones;
then the end-effector positions and the second gripper dims (31 dims). `standard` is every dim the
layout allows in the standard track. `--state-indices` picks dims by index on any layout, checked
against its size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.errors import B1kError
from schemas.r1pro import DEFAULT_LAYOUT, LayoutError, StateLayout

# (slice name, how many of its first dims; None = all). Checkpoints trained by the original script
# expect these quantities in ascending index order of the 2025 layout, which the 2026 layout keeps.
TOP32_SLICES: tuple[tuple[str, int | None], ...] = (
    ("arm_left_qpos", None),
    ("arm_left_qvel", 2),
    ("eef_left_pos", None),
    ("gripper_left_qpos", None),
    ("arm_right_qpos", None),
    ("arm_right_qvel", 2),
    ("eef_right_pos", None),
    ("gripper_right_qpos", None),
    ("trunk_qpos", None),
)


@dataclass(frozen=True)
class Part:
    """Dims [start, stop) of a named slice (offsets inside the slice; stop None = to its end)."""

    slice: str
    start: int = 0
    stop: int | None = None


# The action-aligned preset, in this order (BEHAVIOR.md: the action is base 0:3, torso 3:7, left_arm
# 7:14, left_gripper 14, right_arm 15:22, right_gripper 22), then 8 more useful dims. Every slice is
# standard-track allowed on both layouts (2025: base_qvel is 253:256).
ALIGNED_PARTS: tuple[Part, ...] = (
    Part("base_qvel"),  # action 0:3, base velocity
    Part("trunk_qpos"),  # action 3:7, torso
    Part("arm_left_qpos"),  # action 7:14
    Part("gripper_left_qpos", 0, 1),  # action 14
    Part("arm_right_qpos"),  # action 15:22
    Part("gripper_right_qpos", 0, 1),  # action 22
    Part("eef_left_pos"),
    Part("eef_right_pos"),
    Part("gripper_left_qpos", 1, 2),
    Part("gripper_right_qpos", 1, 2),
)
ALIGNED_ACTION_DIMS = 23  # the aligned preset's first 23 dims match the 23 action dims one to one

PRESET_NAMES: tuple[str, ...] = ("aligned", "standard", "top32")
DEFAULT_PRESET = "top32"


class StateSelectionError(B1kError, ValueError):
    pass


def slice_indices(layout: StateLayout, slices: tuple[tuple[str, int | None], ...]) -> tuple[int, ...]:
    """The ascending union of the named slices' (first `count`) indices on `layout`."""
    chosen: set[int] = set()
    for name, count in slices:
        try:
            segment = layout.segment(name)
        except LayoutError as exc:
            raise StateSelectionError(str(exc)) from None
        chosen.update(range(segment.start, segment.stop if count is None else segment.start + count))
    return tuple(sorted(chosen))


def ordered_indices(layout: StateLayout, parts: tuple[Part, ...]) -> tuple[int, ...]:
    """The named parts' indices on `layout`, in the parts' order (no index twice)."""
    chosen: list[int] = []
    for part in parts:
        try:
            segment = layout.segment(part.slice)
        except LayoutError as exc:
            raise StateSelectionError(str(exc)) from None
        stop = segment.size if part.stop is None else part.stop
        if not 0 <= part.start < stop <= segment.size:
            raise StateSelectionError(f"{part} is outside slice {part.slice} ({segment.size} dims)")
        chosen.extend(range(segment.start + part.start, segment.start + stop))
    if len(set(chosen)) != len(chosen):
        raise StateSelectionError(f"the parts {parts} select an index twice")
    return tuple(chosen)


def preset_indices(name: str, layout: StateLayout = DEFAULT_LAYOUT) -> tuple[int, ...]:
    if name == "aligned":
        return ordered_indices(layout, ALIGNED_PARTS)
    if name == "top32":
        return slice_indices(layout, TOP32_SLICES)
    if name == "standard":
        return tuple(i for i in range(layout.dim) if layout.allowed(i))
    raise StateSelectionError(f"unknown state preset {name!r}; expected one of {sorted(PRESET_NAMES)}")


TOP32_INDICES: tuple[int, ...] = preset_indices("top32")  # on the 2025 layout
STANDARD_INDICES: tuple[int, ...] = preset_indices("standard")  # on the 2025 layout


@dataclass(frozen=True)
class StateSelection:
    """The chosen state dims: a preset name (or `custom`), source indices in order, their names, and
    the layout they index."""

    preset: str
    indices: tuple[int, ...]
    names: tuple[str, ...] = field(default=())
    layout: StateLayout = DEFAULT_LAYOUT

    @property
    def dim(self) -> int:
        return len(self.indices)

    @property
    def not_standard_track(self) -> tuple[int, ...]:
        """Indices that the BEHAVIOR standard track does not allow (2025: global pose, base joints)."""
        return tuple(i for i in self.indices if not self.layout.allowed(i))


def parse_state_indices(text: str, layout: StateLayout = DEFAULT_LAYOUT) -> tuple[int, ...]:
    """Parse `158:165,179,186:189` (Python-style half-open ranges and single indices) into indices of
    `layout`."""
    indices: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if ":" in part:
                start_text, stop_text = part.split(":", 1)
                start, stop = int(start_text), int(stop_text)
                if stop <= start:
                    raise StateSelectionError(
                        f"empty range {part!r} in --state-indices (stop must be > start)"
                    )
                indices.extend(range(start, stop))
            else:
                indices.append(int(part))
        except ValueError as exc:
            if isinstance(exc, StateSelectionError):
                raise
            raise StateSelectionError(
                f"cannot parse {part!r} in --state-indices: expected an index like 179 or a range like 158:165"
            ) from exc
    if not indices:
        raise StateSelectionError("--state-indices selects no dims")
    out_of_range = [i for i in indices if not 0 <= i < layout.dim]
    if out_of_range:
        raise StateSelectionError(
            f"--state-indices {out_of_range} outside 0..{layout.dim - 1} (state layout {layout.describe()})"
        )
    duplicated = sorted({i for i in indices if indices.count(i) > 1})
    if duplicated:
        raise StateSelectionError(f"--state-indices repeats {duplicated}")
    return tuple(indices)


def resolve_state_selection(
    preset: str | None = DEFAULT_PRESET, indices: str | None = None, layout: StateLayout = DEFAULT_LAYOUT
) -> StateSelection:
    """A preset by name, or a custom list (`--state-indices`, which wins over the preset), on `layout`."""
    if indices:
        chosen = parse_state_indices(indices, layout)
        return StateSelection("custom", chosen, tuple(layout.names(chosen)), layout)
    name = preset or DEFAULT_PRESET
    chosen = preset_indices(name, layout)
    return StateSelection(name, chosen, tuple(layout.names(chosen)), layout)
