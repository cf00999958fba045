"""State presets: which of the 256 R1Pro state dims become the policy's state, and in what order."""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.r1pro import STATE_DIM, standard_track_allowed, state_names

# Ascending index order: checkpoints trained by the original script expect exactly this order.
TOP32_INDICES: tuple[int, ...] = (
    *range(158, 165),  # arm_left_qpos
    179,
    180,  # arm_left_qvel, first two
    *range(186, 189),  # eef_left_pos
    193,
    194,  # gripper_left_qpos
    *range(197, 204),  # arm_right_qpos
    218,
    219,  # arm_right_qvel, first two
    *range(225, 228),  # eef_right_pos
    232,
    233,  # gripper_right_qpos
    *range(236, 240),  # trunk_qpos
)

STANDARD_INDICES: tuple[int, ...] = tuple(i for i in range(STATE_DIM) if standard_track_allowed(i))

PRESETS: dict[str, tuple[int, ...]] = {"top32": TOP32_INDICES, "standard": STANDARD_INDICES}
DEFAULT_PRESET = "top32"


class StateSelectionError(ValueError):
    pass


@dataclass(frozen=True)
class StateSelection:
    """The chosen state dims: a preset name (or `custom`), source indices in order, and their names."""

    preset: str
    indices: tuple[int, ...]
    names: tuple[str, ...] = field(default=())

    @property
    def dim(self) -> int:
        return len(self.indices)

    @property
    def not_standard_track(self) -> tuple[int, ...]:
        """Indices that the BEHAVIOR standard track does not allow (global pose, base joints)."""
        return tuple(i for i in self.indices if not standard_track_allowed(i))


def parse_state_indices(text: str) -> tuple[int, ...]:
    """Parse `158:165,179,186:189` (Python-style half-open ranges and single indices) into indices."""
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
    out_of_range = [i for i in indices if not 0 <= i < STATE_DIM]
    if out_of_range:
        raise StateSelectionError(f"--state-indices {out_of_range} outside 0..{STATE_DIM - 1}")
    duplicated = sorted({i for i in indices if indices.count(i) > 1})
    if duplicated:
        raise StateSelectionError(f"--state-indices repeats {duplicated}")
    return tuple(indices)


def resolve_state_selection(
    preset: str | None = DEFAULT_PRESET, indices: str | None = None
) -> StateSelection:
    """A preset by name, or a custom list (`--state-indices`, which wins over the preset)."""
    if indices:
        chosen = parse_state_indices(indices)
        return StateSelection("custom", chosen, tuple(state_names(chosen)))
    name = preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise StateSelectionError(f"unknown state preset {name!r}; expected one of {sorted(PRESETS)}")
    chosen = PRESETS[name]
    return StateSelection(name, chosen, tuple(state_names(chosen)))
